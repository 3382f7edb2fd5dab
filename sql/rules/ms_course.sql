-- ms_course: a listed course passes, an "unknown" course is unknown, any other fails.
select
    patient_id,
    case
        when coalesce(list_contains($courses, ms_course), false) then 'pass'
        when coalesce(list_contains($unknown_courses, ms_course), false) then 'unknown'
        else 'fail'
    end as status
from patients
