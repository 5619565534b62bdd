-- One row per version of a call session (session_id, updated_at: the raw key). The participants are read
-- from the payload by role (the contract guarantees one patient and one provider, in any order); join lags
-- are minutes from the scheduled start, negative for a participant who joined early. The network measures
-- are null until the platform finalizes them.
with

source as (

    select * from {{ source('video_api', 'call_sessions') }}

),

by_role as (

    select
        source.*,
        jsonb_path_query_first(source.payload, '$.participants[*] ? (@.role == "patient")') as patient_entry,
        jsonb_path_query_first(source.payload, '$.participants[*] ? (@.role == "provider")') as provider_entry
    from source

),

renamed as (

    select
        -- ids
        session_id,
        appointment_id,

        -- attributes
        status as session_status,
        status = 'finalized' as is_final,
        {{ json_text('patient_entry', 'platform') }} as patient_platform,
        {{ json_text('patient_entry', 'app_version') }} as patient_app_version,
        {{ json_text("(patient_entry -> 'network')", 'resolution') }} as patient_resolution,
        {{ json_text('provider_entry', 'platform') }} as provider_platform,
        {{ json_text('provider_entry', 'app_version') }} as provider_app_version,
        schema_version,

        -- measures
        cast({{ json_text('patient_entry', 'reconnects') }} as integer) as patient_reconnects,
        cast({{ json_text('provider_entry', 'reconnects') }} as integer) as provider_reconnects,
        cast({{ json_text("(patient_entry -> 'network')", 'packet_loss_pct') }} as numeric(6, 2))
            as patient_packet_loss_pct,
        cast({{ json_text("(patient_entry -> 'network')", 'jitter_ms') }} as numeric(9, 1)) as patient_jitter_ms,
        cast({{ json_text("(patient_entry -> 'network')", 'bitrate_kbps') }} as integer) as patient_bitrate_kbps,
        cast({{ json_text("(provider_entry -> 'network')", 'packet_loss_pct') }} as numeric(6, 2))
            as provider_packet_loss_pct,
        cast({{ json_text("(provider_entry -> 'network')", 'jitter_ms') }} as numeric(9, 1)) as provider_jitter_ms,

        -- timestamps (UTC)
        {{ to_utc(json_text('payload', 'scheduled_start')) }} as scheduled_start_at,
        {{ to_utc(json_text('payload', 'started_at')) }} as call_started_at,
        {{ to_utc(json_text('payload', 'ended_at')) }} as call_ended_at,
        {{ to_utc(json_text('patient_entry', 'joined_at')) }} as patient_joined_at,
        {{ to_utc(json_text('patient_entry', 'left_at')) }} as patient_left_at,
        {{ to_utc(json_text('provider_entry', 'joined_at')) }} as provider_joined_at,
        {{ to_utc(json_text('provider_entry', 'left_at')) }} as provider_left_at,
        {{ to_utc('updated_at') }} as updated_at,

        -- lineage
        api_url,
        _load_run_id as load_run_id,
        _loaded_at as loaded_at

    from by_role

)

select * from renamed
