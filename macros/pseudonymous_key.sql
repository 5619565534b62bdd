{#- patient_key: HMAC-SHA256 of the patient id under the pipeline's secret key (runtime/pseudonym.py), as
    lowercase hex. The key reaches the session as its two HMAC pads (settings telemed.pseudonym_ipad and
    _opad, put in PGOPTIONS by `python -m loaders env`), so it never appears in compiled SQL or logs;
    Postgres's built-in sha256 does the rest: HMAC(k, m) = sha256(opad || sha256(ipad || m)). -#}
{% macro pseudonymous_key(expression) -%}
    {{ return(adapter.dispatch('pseudonymous_key', 'telemed')(expression)) }}
{%- endmacro %}

{% macro postgres__pseudonymous_key(expression) -%}
    encode(sha256(
        decode(current_setting('telemed.pseudonym_opad'), 'hex')
        || sha256(decode(current_setting('telemed.pseudonym_ipad'), 'hex') || convert_to({{ expression }}, 'UTF8'))
    ), 'hex')
{%- endmacro %}

{% macro default__pseudonymous_key(expression) -%}
    {{ exceptions.raise_compiler_error(
        "pseudonymous_key has no implementation for " ~ adapter.type() ~ ": add one keyed the same way") }}
{%- endmacro %}

{#- At run start: the pads must be there, or every patient_key would fail in the middle of a build. -#}
{% macro require_pseudonym_key() -%}
    {%- if execute and flags.WHICH in ('run', 'build', 'test') -%}
        {%- set found = run_query(
            "select current_setting('telemed.pseudonym_ipad', true) is not null"
            " and current_setting('telemed.pseudonym_opad', true) is not null").columns[0].values()[0] -%}
        {%- if not found -%}
            {{ exceptions.raise_compiler_error(
                "the pseudonym key is not set for this session: run dbt through `python -m loaders env -- dbt ...`"
                " (it passes TELEMED_PSEUDONYM_KEY, or the state folder's generated key, in PGOPTIONS)") }}
        {%- endif -%}
    {%- endif -%}
    select 1
{%- endmacro %}
