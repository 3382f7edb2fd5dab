-- creatinine_clearance: Cockcroft-Gault from the creatinine that organ_function uses
-- (latest within the lookback, highest ratio of a same-day tie), the latest weight
-- (lowest of a same-day tie) and the age. Unknown sex is decided only when the male
-- and female values agree.
with creat as (
    select
        patient_id,
        sample_date,
        value / coalesce(ref_high, case
            when unit = 'mg/dL' then $creat_default_uln_umol / $creat_umol_per_mg_dl
            else $creat_default_uln_umol
        end) as ratio,
        case when unit = 'mg/dL' then value else value / $creat_umol_per_mg_dl end as mg_dl
    from labs
    where test = 'CREAT'
      and sample_date between cast($as_of as date) - cast($lab_lookback_days as integer) and $as_of
),

creat_latest as (
    select patient_id, mg_dl as creat_mg_dl
    from (
        select
            patient_id,
            mg_dl,
            row_number() over (
                partition by patient_id order by sample_date desc, ratio desc, mg_dl desc
            ) as rn
        from creat
    ) as ranked
    where rn = 1
),

weights as (
    select
        patient_id,
        visit_date,
        weight_kg,
        max(visit_date) over (partition by patient_id) as last_date
    from visits
    where weight_kg is not null
      and visit_date between cast($as_of as date) - cast($weight_lookback_days as integer) and $as_of
),

weight_latest as (
    select patient_id, min(weight_kg) as weight, max(visit_date) as weight_date
    from weights
    where visit_date = last_date
    group by patient_id
),

inputs as (
    select
        p.patient_id,
        p.sex,
        c.creat_mg_dl,
        w.weight,
        w.weight_date,
        cast(year($as_of) - year(p.birth_date)
            - case
                when month($as_of) < month(p.birth_date) then 1
                when month($as_of) = month(p.birth_date) and day($as_of) < day(p.birth_date) then 1
                else 0
              end as bigint) as age
    from patients as p
    left join creat_latest as c on c.patient_id = p.patient_id
    left join weight_latest as w on w.patient_id = p.patient_id
),

clearance as (
    select
        *,
        cast(140 - age as double) * weight / (72.0 * creat_mg_dl) as male
    from inputs
),

both_sexes as (
    select *, male * $female_factor as female
    from clearance
)

select
    patient_id,
    case
        when male is null then 'unknown'
        when sex = 'F' then case when female < $min_crcl then 'fail' else 'pass' end
        when sex = 'M' then case when male < $min_crcl then 'fail' else 'pass' end
        when male < $min_crcl then 'fail'
        when female >= $min_crcl then 'pass'
        else 'unknown'
    end as status,
    case when sex = 'F' then female when sex = 'M' then male end as crcl,
    creat_mg_dl,
    weight,
    weight_date
from both_sexes
