-- organ_function: latest AST, ALT, bilirubin and creatinine within the lookback as a
-- multiple of the ULN (the row's ref_high, else the default converted to the row's
-- unit); a same-day tie gives the highest ratio. Any above its limit fails; all four
-- present and within limits passes; otherwise unknown.
with recent as (
    select
        patient_id,
        test,
        sample_date,
        value / coalesce(ref_high, case
            when test = 'AST' then $ast_default_uln
            when test = 'ALT' then $alt_default_uln
            when test = 'TBIL' and unit = 'mg/dL' then $tbil_default_uln_umol / $tbil_umol_per_mg_dl
            when test = 'TBIL' then $tbil_default_uln_umol
            when test = 'CREAT' and unit = 'mg/dL' then $creat_default_uln_umol / $creat_umol_per_mg_dl
            else $creat_default_uln_umol
        end) as ratio,
        max(sample_date) over (partition by patient_id, test) as last_date
    from labs
    where test in ('AST', 'ALT', 'TBIL', 'CREAT')
      and sample_date between cast($as_of as date) - cast($lookback_days as integer) and $as_of
),

latest as (
    select
        patient_id,
        max(case when test = 'AST' then ratio end) as ast,
        max(case when test = 'ALT' then ratio end) as alt,
        max(case when test = 'TBIL' then ratio end) as tbil,
        max(case when test = 'CREAT' then ratio end) as creat
    from recent
    where sample_date = last_date
    group by patient_id
)

select
    p.patient_id,
    case
        when coalesce(l.ast > $ast_max_uln, false)
          or coalesce(l.alt > $alt_max_uln, false)
          or coalesce(l.tbil > $tbil_max_uln, false)
          or coalesce(l.creat > $creat_max_uln, false) then 'fail'
        when l.ast is not null and l.alt is not null and l.tbil is not null and l.creat is not null then 'pass'
        else 'unknown'
    end as status,
    l.ast as ast_uln_ratio,
    l.alt as alt_uln_ratio,
    l.tbil as tbil_uln_ratio,
    l.creat as creat_uln_ratio
from patients as p
left join latest as l on l.patient_id = p.patient_id
