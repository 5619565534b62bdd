-- One row per consumer group, topic and partition: where the exactly-once consumer resumes.
with

source as (

    select * from {{ source('kafka', 'kafka_offsets') }}

),

renamed as (

    select
        -- ids
        consumer_group,
        topic as kafka_topic,
        partition as kafka_partition,

        -- measures
        next_offset,

        -- timestamps
        {{ to_utc('updated_at') }} as updated_at

    from source

)

select * from renamed
