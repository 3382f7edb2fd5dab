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

-- Each step below reads the one before it once (Spark recomputes a CTE at every use).
-- Baseline: the latest valid visit in [ws - baseline_lookback_days, ws), else the earliest in [ws, D];
-- a patient without one keeps a row of NULLs.
baselines as (
    select
        i.patient_id as pk,
        v.day,
        v.edss,
        row_number() over (
            partition by i.patient_id
            order by
                case when v.day < b.ws then 0 else 1 end nulls last,
                case when v.day < b.ws then -v.day else v.day end nulls last
        ) as rn
    from patients as i
    cross join bounds as b
    left join valid as v
        on v.pk = i.patient_id
       and v.day >= b.ws - $baseline_lookback_days
       and v.day <= b.d
),

thresholds as (
    select
        pk,
        edss as b,
        day as b_day,
        edss + case when edss < $increase_step_edss then $increase_below else $increase_from end as thr
    from baselines
    where rn = 1
),

-- Worsening candidates: valid visits in the recent window after the baseline's date (a row of NULLs
-- when none).
in_window as (
    select
        t.*,
        l.day,
        l.edss,
        l.c_day,
        l.conf_level,
        l.pend_level,
        case when l.conf_level >= t.thr then l.day end as conf_day
    from thresholds as t
    cross join bounds as bo
    left join levels as l
        on l.pk = t.pk
       and l.day between bo.ws and bo.d
       and l.day > t.b_day
),

judged as (
    select
        pk,
        b,
        b_day,
        count(day) as n_window,
        max(case when conf_level >= thr then 1 else 0 end) as confirmed,
        max(case when pend_level >= thr then 1 else 0 end) as pending,
        -- The earliest confirmed worsening (see confirmed_progression.sql: aggregates, not a window).
        min(conf_day) as w_day,
        arg_min(edss, conf_day) as w_edss,
        arg_min(c_day, conf_day) as w_c_day
    from in_window
    group by pk, b, b_day
)

select
    pk as patient_id,
    case
        when confirmed = 1 then 'pass'
        when b is null or n_window = 0 then 'unknown'
        when pending = 1 then 'unknown'
        else 'fail'
    end as status,
    date '1970-01-01' + cast(b_day as integer) as baseline_date,
    b as baseline_edss,
    date '1970-01-01' + cast(w_day as integer) as worsening_date,
    w_edss as worsening_edss,
    date '1970-01-01' + cast(w_c_day as integer) as confirmed_date
from judged
