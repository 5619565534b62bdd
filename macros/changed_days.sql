{#- The days whose appointment numbers an incremental run must recompute (a query of date_id): the days
    of the facts it rebuilt and every day those appointments can have counted on before. Reads only the
    rows loaded since `loaded_after` (a literal: macro incremental_watermark) and their appointments'
    events, through indexes, so its cost follows the new data, not the history.
    An appointment counts on the day of its booked time, or of its first event while the booking has not
    arrived, so a day it left is the day of one of its events or of one of its bookings: all of them are
    returned (a few unchanged days are recomputed too, which changes nothing).
    provider_versions: also the days of the appointments of a provider with a version loaded since then
    (their provider_key, hence their specialty, may have changed), as fact_appointment re-merges them. -#}
{% macro changed_appointment_days(loaded_after, provider_versions=false) -%}
    select rebuilt_appointments.date_id
    from {{ ref('fact_appointment') }} as rebuilt_appointments
    where rebuilt_appointments.last_loaded_at >= {{ loaded_after }}
    union
    select {{ date_id('events_of_rebuilt.event_at') }}
    from {{ ref('stg_kafka__appointment_events') }} as events_of_rebuilt
    where
        {{ in_subquery(
            'events_of_rebuilt.appointment_id',
            'select recent.appointment_id from ' ~ ref('fact_appointment') ~ ' as recent'
            ~ ' where recent.last_loaded_at >= ' ~ loaded_after
        ) }}
    union
    select {{ date_id('bookings_of_rebuilt.scheduled_for') }}
    from {{ ref('stg_kafka__appointment_events') }} as bookings_of_rebuilt
    where
        bookings_of_rebuilt.scheduled_for is not null
        and {{ in_subquery(
            'bookings_of_rebuilt.appointment_id',
            'select recent.appointment_id from ' ~ ref('fact_appointment') ~ ' as recent'
            ~ ' where recent.last_loaded_at >= ' ~ loaded_after
        ) }}
    {%- if provider_versions %}
    union
    select appointments_of_changed_providers.date_id
    from {{ ref('fact_appointment') }} as appointments_of_changed_providers
    where
        {{ in_subquery(
            'appointments_of_changed_providers.provider_id',
            'select changed.provider_id from ' ~ ref('int_provider_versions_validity') ~ ' as changed'
            ~ ' where changed.loaded_at >= ' ~ loaded_after
        ) }}
    {%- endif %}
{%- endmacro %}

{#- The days whose feedback numbers an incremental run must recompute: the days of the forms rebuilt since
    `loaded_after` (a form's day, the day it was submitted, never changes) and, with provider_versions,
    the days of the forms of appointments of a provider with a version loaded since then. -#}
{% macro changed_feedback_days(loaded_after, provider_versions=false) -%}
    select rebuilt_forms.date_id
    from {{ ref('fact_feedback') }} as rebuilt_forms
    where rebuilt_forms.last_loaded_at >= {{ loaded_after }}
    {%- if provider_versions %}
    union
    select forms_of_changed_providers.date_id
    from {{ ref('fact_feedback') }} as forms_of_changed_providers
    where
        {{ in_subquery(
            'forms_of_changed_providers.appointment_id',
            'select changed_appointments.appointment_id from ' ~ ref('fact_appointment') ~ ' as changed_appointments'
            ~ ' where ' ~ in_subquery(
                'changed_appointments.provider_id',
                'select changed.provider_id from ' ~ ref('int_provider_versions_validity') ~ ' as changed'
                ~ ' where changed.loaded_at >= ' ~ loaded_after
            )
        ) }}
    {%- endif %}
{%- endmacro %}

{#- Post-hook of a daily rollup (delete+insert by day): deletes the zero rows an incremental run writes for
    a recomputed day left without rows (they replace its old rows); a full refresh writes none. Only they
    have no load time, so they are found through the last_loaded_at index, not by reading every day. -#}
{% macro delete_emptied_days(count_column) -%}
    delete from {{ this }} where last_loaded_at is null and {{ count_column }} = 0
{%- endmacro %}
