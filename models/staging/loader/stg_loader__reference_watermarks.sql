-- One row per clinic_ops table the reference loader copies.
with

source as (

    select * from {{ source('loader', 'reference_watermarks') }}

),

renamed as (

    select
        -- ids
        source_table,

        -- timestamps (UTC)
        {{ to_utc('watermark') }} as watermark_at,
        {{ to_utc('updated_at') }} as updated_at

    from source

)

select * from renamed
