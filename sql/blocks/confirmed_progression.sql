-- confirmed_progression (a custom block of the criteria language): confirmed EDSS worsening within a
-- treatment episode of the listed lines (docs/criteria-nct04203017.md, "Progression").
-- include: edss_levels

-- Line 1/2 episodes started by D; the window runs from start + lag to the end (or D).
-- An episode is (patient_id, ep): ep numbers the patient's episodes, so every window is keyed by patient.
with episodes as (
    select
        row_number() over (
            partition by t.patient_id order by start_date nulls last, drug nulls last, end_date nulls last
        ) as ep,
        t.patient_id,
        t.patient_id as pk,
        drug,
        start_date,
        end_date,
        date_diff('day', date '1970-01-01', start_date) as start,
        date_diff('day', date '1970-01-01', start_date) + $lag_days as win_lo,
        date_diff('day', date '1970-01-01', case when end_date is not null and end_date <= $as_of then end_date else $as_of end)
            as win_hi
    from treatments as t
    where coalesce(list_contains($lines, line), false)
      and start_date <= $as_of
),

judgeable as (
    select * from episodes where win_hi >= win_lo
),

-- Each step below reads the one before it once (Spark recomputes a CTE at every use).
-- Baseline: the latest valid visit in [start - baseline_lookback_days, start], else the earliest
-- in (start, start + late_baseline_days]; an episode without one keeps a row of NULLs.
baselines as (
    select
        e.*,
        v.day as v_day,
        v.edss as v_edss,
        row_number() over (
            partition by e.pk, e.ep
            order by
                case when v.day <= e.start then 0 else 1 end nulls last,
                case when v.day <= e.start then -v.day else v.day end nulls last
        ) as rn
    from judgeable as e
    left join valid as v
        on v.pk = e.pk
       and v.day between e.start - $baseline_lookback_days and e.start + $late_baseline_days
),

thresholds as (
    select
        pk, ep, patient_id, drug, start, start_date, end_date, win_lo, win_hi,
        v_edss as b,
        v_day as b_day,
        v_edss + case when v_edss < $increase_step_edss then $increase_below else $increase_from end as thr
    from baselines
    where rn = 1
),

-- The episode's visits in its window (a row of NULLs when none).
in_window as (
    select
        e.*,
        l.day,
        l.edss,
        l.c_day,
        l.conf_level,
        l.pend_level,
        case when l.conf_level >= e.thr then l.day end as conf_day
    from thresholds as e
    left join levels as l
        on l.pk = e.pk
       and l.day between e.win_lo and e.win_hi
),

verdicts as (
    select
        patient_id,
        drug,
        start,
        start_date,
        end_date,
        b,
        b_day,
        -- The earliest confirmed worsening, with its EDSS and confirmation (one visit per day, and a
        -- confirmed level has both: arg_min, Spark's min_by, never meets a NULL it would treat apart).
        -- Aggregates here rather than a window over the episode: the same answer at half the cost.
        min(conf_day) as w_day,
        arg_min(edss, conf_day) as w_edss,
        arg_min(c_day, conf_day) as w_c_day,
        case
            when max(case when conf_level >= thr then 1 else 0 end) = 1 then 'pass'
            when b is null or count(day) = 0 then 'unknown'
            when max(case when pend_level >= thr then 1 else 0 end) = 1 then 'unknown'
            else 'fail'
        end as ep_status
    from in_window
    group by pk, ep, patient_id, drug, start, start_date, end_date, b, b_day
),

-- The episode shown as evidence: the decisive one, earliest worsening first.
shown as (
    select
        *,
        row_number() over (
            partition by patient_id
            order by
                case ep_status when 'pass' then 0 when 'unknown' then 1 else 2 end nulls last,
                w_day nulls last, start nulls last, drug nulls last, end_date nulls last
        ) as rn
    from verdicts
)

select
    p.patient_id,
    coalesce(s.ep_status, 'fail') as status,
    s.drug,
    s.start_date as episode_start,
    s.end_date as episode_end,
    date '1970-01-01' + cast(s.b_day as integer) as baseline_date,
    s.b as baseline_edss,
    date '1970-01-01' + cast(s.w_day as integer) as worsening_date,
    s.w_edss as worsening_edss,
    date '1970-01-01' + cast(s.w_c_day as integer) as confirmed_date
from patients as p
left join shown as s on s.patient_id = p.patient_id and s.rn = 1
