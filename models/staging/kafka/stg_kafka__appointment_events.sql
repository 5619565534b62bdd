-- One row per appointment event (event_id is the raw primary key, so no re-delivery reaches this view).
-- The type-specific fields are read from the payload and cast; enums are trimmed and lower-cased, except
-- device_type whose contract values are title case. `loaded_at` stays timestamptz so that incremental
-- filters on it use the raw index.
with

source as (

    select * from {{ source('kafka', 'appointment_events') }}

),

renamed as (

    select
        -- ids
        event_id,
        appointment_id,
        {{ json_text('payload', 'patient_id') }} as patient_id,
        {{ json_text('payload', 'provider_id') }} as provider_id,
        {{ json_text('payload', 'rescheduled_from_appointment_id') }} as rescheduled_from_appointment_id,
        {{ json_text('payload', 'rescheduled_to_appointment_id') }} as rescheduled_to_appointment_id,

        -- attributes
        lower(trim(event_type)) as event_type,
        lower(trim({{ json_text('payload', 'appointment_type') }})) as appointment_type,
        trim({{ json_text('payload', 'device_type') }}) as device_type,
        lower(trim({{ json_text('payload', 'technical_issue_type') }})) as technical_issue_type,
        lower(trim({{ json_text('payload', 'cancelled_by') }})) as cancelled_by,
        {{ json_text('payload', 'reason') }} as event_reason,
        schema_version,

        -- measures
        cast({{ json_text('payload', 'wait_time_minutes') }} as numeric(8, 2)) as wait_time_minutes,
        cast({{ json_text('payload', 'duration_minutes') }} as numeric(8, 2)) as duration_minutes,
        cast({{ json_text('payload', 'connection_quality') }} as integer) as connection_quality,

        -- timestamps (UTC)
        {{ to_utc('event_ts') }} as event_at,
        {{ to_utc(json_text('payload', 'scheduled_for')) }} as scheduled_for,
        {{ to_utc(json_text('payload', 'new_scheduled_for')) }} as new_scheduled_for,

        -- lineage
        kafka_topic,
        kafka_partition,
        kafka_offset,
        _load_run_id as load_run_id,
        _loaded_at as loaded_at

    from source

)

select * from renamed
