-- research_consent: the registry's consent to be contacted for research.
select
    patient_id,
    case
        when research_consent = 'Y' then 'pass'
        when research_consent = 'N' then 'fail'
        else 'unknown'
    end as status
from patients
