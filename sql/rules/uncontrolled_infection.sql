-- uncontrolled_infection: among bacterial/fungal infections active at D, one not
-- controlled fails; one with control unrecorded is unknown; otherwise pass.
with active as (
    select patient_id, controlled
    from conditions
    where category = 'infection'
      and coalesce(list_contains($infection_types, infection_type), false)
      and (onset_date is null or onset_date <= $as_of)
      and (end_date is null or end_date >= $as_of)
),

per_patient as (
    select
        patient_id,
        max(case when controlled = 'N' then 1 else 0 end) as any_uncontrolled,
        max(case when controlled is null then 1 else 0 end) as any_unrecorded
    from active
    group by patient_id
)

select
    p.patient_id,
    case
        when coalesce(a.any_uncontrolled, 0) = 1 then 'fail'
        when coalesce(a.any_unrecorded, 0) = 1 then 'unknown'
        else 'pass'
    end as status
from patients as p
left join per_patient as a on a.patient_id = p.patient_id
