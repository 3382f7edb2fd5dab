-- alive: fails when the registry records a death on or before the reference date.
select
    patient_id,
    case when death_date is not null and death_date <= $as_of then 'fail' else 'pass' end as status
from patients
