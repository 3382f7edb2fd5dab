-- consent_capacity: fails when a condition that impairs consent is active at D.
with hits as (
    select distinct patient_id
    from conditions
    where impairs_consent = 'Y'
      and (onset_date is null or onset_date <= $as_of)
      and (end_date is null or end_date >= $as_of)
)

select
    p.patient_id,
    case when h.patient_id is not null then 'fail' else 'pass' end as status
from patients as p
left join hits as h on h.patient_id = p.patient_id
