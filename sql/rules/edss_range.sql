-- edss_range: the latest EDSS within the lookback (highest of a same-day tie) in range.
with recent as (
    select
        patient_id,
        visit_date,
        edss,
        max(visit_date) over (partition by patient_id) as last_date
    from visits
    where edss is not null
      and visit_date between cast($as_of as date) - cast($lookback_days as integer) and $as_of
),

latest as (
    select patient_id, max(edss) as edss, max(visit_date) as edss_date
    from recent
    where visit_date = last_date
    group by patient_id
)

select
    p.patient_id,
    case
        when l.edss is null then 'unknown'
        when l.edss between $min_edss and $max_edss then 'pass'
        else 'fail'
    end as status,
    l.edss,
    l.edss_date
from patients as p
left join latest as l on l.patient_id = p.patient_id
