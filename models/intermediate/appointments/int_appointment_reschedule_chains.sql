{{
    config(
        materialized='incremental',
        unique_key='appointment_id',
        incremental_strategy='merge',
        on_schema_change='append_new_columns',
        indexes=[{'columns': ['appointment_id'], 'unique': True}, {'columns': ['last_loaded_at']}],
        post_hook=["delete from {{ this }} where last_loaded_at is null"],
    )
}}

-- Grain: one row per appointment that was booked as the reschedule of another one.
-- Walks the `rescheduled_from` links back to the chain's first appointment: reschedule_count is how many
-- times the visit had been moved before this appointment (1 = first reschedule). A link to an
-- appointment not loaded yet still counts; the walk stops there. Depth is capped to survive bad cycles.
-- last_loaded_at: the newest load among the appointments of the chain up to this one, its first one
-- included once loaded; a row can change only when one of them is loaded again, so fact_appointment finds
-- the chains that changed by it.
-- Incremental (merge on appointment_id): the appointments loaded within var lookback_days of the newest load
-- here (every linked one while this table is empty), and every appointment booked after them in a chain
-- (found forwards through the rescheduled_from index), are walked back again; one of them that lost its
-- link gets a row without a load time, which the post-hook deletes. So a full refresh and any sequence of
-- incremental runs give the same rows, and a run reads the chains of the new data only.

with recursive

{% if is_incremental() %}
    {%- set chained_before = recent_loads_start(this) %}
    touched_appointments as (

        select recent.appointment_id
        from {{ ref('int_appointments_derived_from_events') }} as recent
        where
            {% if chained_before is not none -%}
                recent.last_loaded_at >= {{ chained_before }}
            {%- else -%}
                recent.rescheduled_from_appointment_id is not null
            {%- endif %}

    ),

    affected_appointments (appointment_id, steps) as (

        -- The touched appointments and every appointment after them in a chain.
        select
            touched_appointments.appointment_id,
            0
        from touched_appointments

        union all

        select
            successors.appointment_id,
            affected_appointments.steps + 1
        from affected_appointments
        inner join {{ ref('int_appointments_derived_from_events') }} as successors
            on affected_appointments.appointment_id = successors.rescheduled_from_appointment_id
        where affected_appointments.steps < 100

    ),
{% endif %}

reschedule_links as (

    select
        appointments.appointment_id,
        appointments.rescheduled_from_appointment_id,
        appointments.last_loaded_at
    from {{ ref('int_appointments_derived_from_events') }} as appointments
    where
        -- The incremental condition leads, its `and` trailing, so a full build renders no dangling operator.
        {% if is_incremental() -%}
            {{ in_subquery(
                'appointments.appointment_id',
                'select affected_appointments.appointment_id from affected_appointments'
            ) }} and  -- noqa: LT03
        {% endif -%}
        appointments.rescheduled_from_appointment_id is not null

),

chain_walk (appointment_id, ancestor_appointment_id, steps, last_loaded_at) as (

    select
        appointment_id,
        rescheduled_from_appointment_id,
        1,
        last_loaded_at
    from reschedule_links

    union all

    select
        chain_walk.appointment_id,
        ancestor_links.rescheduled_from_appointment_id,
        chain_walk.steps + 1,
        greatest(chain_walk.last_loaded_at, ancestor_links.last_loaded_at)
    from chain_walk
    {% if is_incremental() -%}
        -- Each step probes the ancestor by its key: the links of the whole history are not read.
        inner join {{ ref('int_appointments_derived_from_events') }} as ancestor_links
            on chain_walk.ancestor_appointment_id = ancestor_links.appointment_id
    {%- else -%}
        inner join reschedule_links as ancestor_links
            on chain_walk.ancestor_appointment_id = ancestor_links.appointment_id
    {%- endif %}
    where
        chain_walk.steps < 100
        and ancestor_links.rescheduled_from_appointment_id is not null

),

deepest_ancestor as (

    select
        appointment_id,
        ancestor_appointment_id,
        steps,
        last_loaded_at,
        row_number() over (partition by appointment_id order by steps desc) as depth_rank
    from chain_walk

),

chains as (

    select
        deepest_ancestor.appointment_id,
        deepest_ancestor.ancestor_appointment_id as original_appointment_id,
        deepest_ancestor.steps as reschedule_count,
        -- The first appointment counts once loaded (a link to it may arrive before it does).
        greatest(
            deepest_ancestor.last_loaded_at,
            coalesce(first_appointments.last_loaded_at, deepest_ancestor.last_loaded_at)
        ) as last_loaded_at
    from deepest_ancestor
    left join {{ ref('int_appointments_derived_from_events') }} as first_appointments
        on deepest_ancestor.ancestor_appointment_id = first_appointments.appointment_id
    where deepest_ancestor.depth_rank = 1

),

final as (

    select * from chains
    {% if is_incremental() -%}
        union all
        -- An affected appointment here that has no link any more (a later booking event without one): a row
        -- without a load time, deleted by the post-hook.
        select
            this_model.appointment_id,
            cast(null as {{ dbt.type_string() }}) as original_appointment_id,
            cast(null as integer) as reschedule_count,
            cast(null as timestamp with time zone) as last_loaded_at
        from {{ this }} as this_model
        where
            {{ in_subquery(
                'this_model.appointment_id',
                'select affected_appointments.appointment_id from affected_appointments'
            ) }}
            and not exists (
                select 1
                from chains
                where chains.appointment_id = this_model.appointment_id
            )
    {%- endif %}

)

select * from final
