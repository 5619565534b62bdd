-- Marts are readable by the reporting role: no column may hold a direct patient identifier.
-- Provider names are allowed (staff), so names are checked on the patient-facing tables only.
{{ config(severity='error') }}

with

mart_columns as (

    select
        table_name,
        column_name
    from information_schema.columns
    where table_schema = 'marts'

)

select
    table_name,
    column_name
from mart_columns
where
    column_name in ('email', 'phone', 'address', 'date_of_birth', 'birth_date', 'ssn')
    or (
        column_name in ('first_name', 'last_name', 'patient_name')
        and table_name not in ('dim_provider', 'snap_clinic_ops__providers')
    )
