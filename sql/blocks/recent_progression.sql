-- recent_progression (a custom block of the criteria language): confirmed EDSS worsening in the
-- recent window [D - window_days, D], measured from the EDSS of the year before it
-- (docs/criteria-nct04411641.md, "Recent confirmed progression").
-- include: edss_levels

-- D and the start of the recent window, as days since 1970-01-01.
with bounds as (
    select
        date_diff('day', date '1970-01-01', $as_of) as d,
        date_diff('day', date '1970-01-01', $as_of) - $window_days as ws
),

-- Baseline: the latest valid visit in [ws - baseline_lookback_days, ws), else the earliest in [ws, D].
baseline_early as (
    select v.pk, v.day, v.edss, row_number() over (partition by v.pk order by v.day desc nulls last) as rn
    from valid as v
    cross join bounds as b
    where v.day >= b.ws - $baseline_lookback_days and v.day < b.ws
),

baseline_late as (
    select v.pk, v.day, v.edss, row_number() over (partition by v.pk order by v.day nulls last) as rn
    from valid as v
    cross join bounds as b
    where v.day >= b.ws and v.day <= b.d
),

based as (
    select
        i.patient_id as pk,
        i.patient_id,
        coalesce(be.edss, bl.edss) as b,
        coalesce(be.day, bl.day) as b_day
    from patients as i
    left join baseline_early as be on be.pk = i.patient_id and be.rn = 1
    left join baseline_late as bl on bl.pk = i.patient_id and bl.rn = 1
),

thresholds as (
    select
        *,
        b + case when b < $increase_step_edss then $increase_below else $increase_from end as thr
    from based
),

-- Worsening candidates: valid visits in the recent window after the baseline's date.
in_window as (
    select t.pk, l.day, l.edss, l.c_day, l.conf_level, l.pend_level, t.thr
    from thresholds as t
    cross join bounds as bo
    inner join levels as l
        on l.pk = t.pk
       and l.day between bo.ws and bo.d
       and l.day > t.b_day
),

judged as (
    select
        pk,
        count(*) as n_window,
        max(case when conf_level >= thr then 1 else 0 end) as confirmed,
        max(case when pend_level >= thr then 1 else 0 end) as pending,
        min(case when conf_level >= thr then day end) as w_day
    from in_window
    group by pk
)

select
    t.patient_id,
    case
        when coalesce(j.confirmed, 0) = 1 then 'pass'
        when t.b is null or j.n_window is null then 'unknown'
        when coalesce(j.pending, 0) = 1 then 'unknown'
        else 'fail'
    end as status,
    date '1970-01-01' + cast(t.b_day as integer) as baseline_date,
    t.b as baseline_edss,
    date '1970-01-01' + cast(j.w_day as integer) as worsening_date,
    w.edss as worsening_edss,
    date '1970-01-01' + cast(w.c_day as integer) as confirmed_date
from thresholds as t
left join judged as j on j.pk = t.pk
left join in_window as w on w.pk = t.pk and w.day = j.w_day
