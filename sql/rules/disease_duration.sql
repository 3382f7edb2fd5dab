-- disease_duration: years since onset (days / 365.25) below the limit. Without an
-- onset, a diagnosis already that old fails (onset can only be earlier); dates
-- after the reference date are not known at it and count as empty.
with years as (
    select
        patient_id,
        case when onset_date <= $as_of then ($as_of - onset_date) / 365.25 end as onset_years,
        case when diagnosis_date <= $as_of then ($as_of - diagnosis_date) / 365.25 end as diagnosis_years
    from patients
)

select
    patient_id,
    case
        when onset_years is not null then case when onset_years < $max_years then 'pass' else 'fail' end
        when diagnosis_years is not null and diagnosis_years >= $max_years then 'fail'
        else 'unknown'
    end as status,
    coalesce(onset_years, diagnosis_years) as years
from years
