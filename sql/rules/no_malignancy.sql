-- no_malignancy: any malignancy with onset on or before the reference date (ended or
-- not) fails, except codes starting with an excluded prefix (non-melanoma skin cancer).
with prefixes as (
    select upper(unnest($excluded_code_prefixes)) as prefix
),

hits as (
    select distinct c.patient_id
    from conditions as c
    where c.category = 'malignancy'
      and (c.onset_date is null or c.onset_date <= $as_of)
      and not exists (
          select 1 from prefixes as x where starts_with(coalesce(c.code, ''), x.prefix)
      )
)

select
    p.patient_id,
    case when h.patient_id is not null then 'fail' else 'pass' end as status
from patients as p
left join hits as h on h.patient_id = p.patient_id
