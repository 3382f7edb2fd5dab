-- pulmonary_function: latest FEV1 and latest DLCO within the lookback, each on its
-- own (lowest of a same-day tie): either below its minimum fails; both present and
-- at least the minimum passes; otherwise unknown.
with recent as (
    select
        patient_id,
        test,
        test_date,
        value,
        max(test_date) over (partition by patient_id, test) as last_date
    from function_tests
    where test in ('FEV1', 'DLCO')
      and test_date between cast($as_of as date) - cast($lookback_days as integer) and $as_of
),

latest as (
    select
        patient_id,
        min(case when test = 'FEV1' then value end) as fev1,
        max(case when test = 'FEV1' then test_date end) as fev1_date,
        min(case when test = 'DLCO' then value end) as dlco,
        max(case when test = 'DLCO' then test_date end) as dlco_date
    from recent
    where test_date = last_date
    group by patient_id
)

select
    p.patient_id,
    case
        when coalesce(l.fev1 < $min_fev1, false) or coalesce(l.dlco < $min_dlco, false) then 'fail'
        when l.fev1 is not null and l.dlco is not null then 'pass'
        else 'unknown'
    end as status,
    l.fev1,
    l.fev1_date,
    l.dlco,
    l.dlco_date
from patients as p
left join latest as l on l.patient_id = p.patient_id
