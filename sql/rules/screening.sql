-- screening: judged at the screening visit, not from registry data.
select patient_id, 'screening' as status
from patients
