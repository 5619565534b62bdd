{{ config(tags=['static']) }}

-- Grain: one row per device type (device_types seed) plus the Unknown member (device_key -1) that
-- appointments point to until they start: a device is known only once the patient joins.

with

device_types as (

    select * from {{ ref('device_types') }}

),

known_devices as (

    select
        device_key,
        device_type,
        device_code,
        is_mobile,
        true as is_known
    from device_types

),

unknown_device as (

    select
        {{ unknown_key() }} as device_key,
        'Unknown' as device_type,
        'unknown' as device_code,
        cast(null as boolean) as is_mobile,
        false as is_known

),

final as (

    select * from known_devices
    union all
    select * from unknown_device

)

select * from final
