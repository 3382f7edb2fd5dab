-- karnofsky: the latest Karnofsky index within the lookback (lowest of a same-day tie).
with recent as (
    select
        patient_id,
        visit_date,
        karnofsky,
        max(visit_date) over (partition by patient_id) as last_date
    from visits
    where karnofsky is not null
      and visit_date between cast($as_of as date) - cast($lookback_days as integer) and $as_of
),

latest as (
    select patient_id, min(karnofsky) as karnofsky, max(visit_date) as karnofsky_date
    from recent
    where visit_date = last_date
    group by patient_id
)

select
    p.patient_id,
    case
        when l.karnofsky is null then 'unknown'
        when l.karnofsky < $min_karnofsky then 'fail'
        else 'pass'
    end as status,
    l.karnofsky,
    l.karnofsky_date
from patients as p
left join latest as l on l.patient_id = p.patient_id
