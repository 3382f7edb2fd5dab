-- lvef: the latest LVEF within the lookback (lowest of a same-day tie) >= the minimum.
with recent as (
    select
        patient_id,
        test_date,
        value,
        max(test_date) over (partition by patient_id) as last_date
    from function_tests
    where test = 'LVEF'
      and test_date between cast($as_of as date) - cast($lookback_days as integer) and $as_of
),

latest as (
    select patient_id, min(value) as lvef, max(test_date) as lvef_date
    from recent
    where test_date = last_date
    group by patient_id
)

select
    p.patient_id,
    case
        when l.lvef is null then 'unknown'
        when l.lvef < $min_lvef then 'fail'
        else 'pass'
    end as status,
    l.lvef,
    l.lvef_date
from patients as p
left join latest as l on l.patient_id = p.patient_id
