-- age: completed years at the reference date; unknown without a birth date.
with aged as (
    select
        patient_id,
        birth_date,
        cast(year($as_of) - year(birth_date)
            - case
                when month($as_of) < month(birth_date) then 1
                when month($as_of) = month(birth_date) and day($as_of) < day(birth_date) then 1
                else 0
              end as bigint) as age
    from patients
)
select
    patient_id,
    case
        when birth_date is null then 'unknown'
        when age >= $min_age and ($max_age is null or age <= $max_age) then 'pass'
        else 'fail'
    end as status,
    age
from aged
