-- One row per rejected Kafka message. The raw text and bytes stay in raw: only the reason and lineage
-- are needed downstream (monitoring of rejection rates).
with

source as (

    select * from {{ source('kafka', 'appointment_events_rejected') }}

),

renamed as (

    select
        -- ids
        rejected_id,
        event_id,

        -- attributes
        reason as rejection_reason,
        error_detail,

        -- lineage
        kafka_topic,
        kafka_partition,
        kafka_offset,
        kafka_key,
        {{ to_utc('kafka_timestamp') }} as kafka_timestamp_at,
        _load_run_id as load_run_id,
        _loaded_at as loaded_at

    from source

)

select * from renamed
