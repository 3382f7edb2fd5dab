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

baseline_early as (
    select
        e.pk,
        e.ep,
        v.day,
        v.edss,
        row_number() over (partition by e.pk, e.ep order by v.day desc nulls last) as rn
    from judgeable as e
    inner join valid as v
        on v.pk = e.pk
       and v.day between e.start - $baseline_lookback_days and e.start
),

baseline_late as (
    select
        e.pk,
        e.ep,
        v.day,
        v.edss,
        row_number() over (partition by e.pk, e.ep order by v.day nulls last) as rn
    from judgeable as e
    inner join valid as v
        on v.pk = e.pk
       and v.day > e.start
       and v.day <= e.start + $late_baseline_days
),

based as (
    select
        e.*,
        coalesce(be.edss, bl.edss) as b,
        coalesce(be.day, bl.day) as b_day
    from judgeable as e
    left join baseline_early as be on be.pk = e.pk and be.ep = e.ep and be.rn = 1
    left join baseline_late as bl on bl.pk = e.pk and bl.ep = e.ep and bl.rn = 1
),

thresholds as (
    select
        *,
        b + case when b < $increase_step_edss then $increase_below else $increase_from end as thr
    from based
),

in_window as (
    select e.pk, e.ep, l.day, l.edss, l.c_day, l.conf_level, l.pend_level, e.thr
    from thresholds as e
    inner join levels as l
        on l.pk = e.pk
       and l.day between e.win_lo and e.win_hi
),

judged as (
    select
        pk,
        ep,
        count(*) as n_window,
        max(case when conf_level >= thr then 1 else 0 end) as confirmed,
        max(case when pend_level >= thr then 1 else 0 end) as pending,
        min(case when conf_level >= thr then day end) as w_day
    from in_window
    group by pk, ep
),

verdicts as (
    select
        t.patient_id,
        t.drug,
        t.start,
        t.start_date,
        t.end_date,
        t.b,
        t.b_day,
        j.w_day,
        w.edss as w_edss,
        w.c_day as w_c_day,
        case
            when coalesce(j.confirmed, 0) = 1 then 'pass'
            when t.b is null or j.n_window is null then 'unknown'
            when coalesce(j.pending, 0) = 1 then 'unknown'
            else 'fail'
        end as ep_status
    from thresholds as t
    left join judged as j on j.pk = t.pk and j.ep = t.ep
    left join in_window as w on w.pk = t.pk and w.ep = t.ep and w.day = j.w_day
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
