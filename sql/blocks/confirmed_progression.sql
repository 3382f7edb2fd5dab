-- confirmed_progression (a custom block of the criteria language): confirmed EDSS worsening within a
-- treatment episode of the listed lines (docs/criteria-nct04203017.md, "Progression"). Dates are whole
-- days since 1970-01-01 so that windows are plain integer ranges.

-- An integer key per patient: windows and joins over tens of millions of visits
-- partition and compare integers, not strings.
with ids as (
    select patient_id, row_number() over (order by patient_id) as pk
    from patients
),

-- The EDSS series: one value per date (the highest), dated on or before D.
series as (
    select i.pk, v.visit_date - date '1970-01-01' as day, max(v.edss) as edss
    from visits as v
    inner join ids as i on i.patient_id = v.patient_id
    where v.edss is not null and v.visit_date <= $as_of
    group by i.pk, v.visit_date
),

onsets as (
    select distinct i.pk, r.onset_date - date '1970-01-01' as onset
    from relapses as r
    inner join ids as i on i.patient_id = r.patient_id
    where r.onset_date <= $as_of
),

-- A visit within the relapse exclusion after an onset is not valid: a relapse
-- inflates EDSS for weeks and is not progression.
valid as (
    select s.pk, s.day, s.edss
    from series as s
    where not exists (
        select 1
        from onsets as r
        where r.pk = s.pk
          and r.onset <= s.day
          and s.day <= r.onset + $relapse_exclusion_days
    )
),

-- Per valid visit v: C, the earliest valid visit >= v + confirmation_days; the
-- lowest EDSS over [v, v + confirmation_days); the lowest EDSS from v on.
windows as (
    select
        pk,
        day,
        edss,
        min(day) over confirm_frame as c_day,
        first_value(edss) over confirm_frame as c_edss,
        min(edss) over (
            partition by pk order by day
            range between current row and $confirmation_days - 1 following
        ) as win_min,
        min(edss) over (
            partition by pk order by day
            rows between current row and unbounded following
        ) as after_min
    from valid
    window confirm_frame as (
        partition by pk order by day
        range between $confirmation_days following and unbounded following
    )
),

-- The highest threshold at which v is a confirmed (or, without C, a pending) worsening.
levels as (
    select
        pk,
        day,
        edss,
        c_day,
        case when c_day is not null then least(win_min, c_edss) end as conf_level,
        case when c_day is null then after_min end as pend_level
    from windows
),

-- Line 1/2 episodes started by D; the window runs from start + lag to the end (or D).
episodes as (
    select
        row_number() over (order by t.patient_id, start_date, drug, end_date) as ep,
        t.patient_id,
        i.pk,
        drug,
        start_date,
        end_date,
        start_date - date '1970-01-01' as start,
        start_date - date '1970-01-01' + $lag_days as win_lo,
        (case when end_date is not null and end_date <= $as_of then end_date else $as_of end)
            - date '1970-01-01' as win_hi
    from treatments as t
    inner join ids as i on i.patient_id = t.patient_id
    where coalesce(list_contains($lines, line), false)
      and start_date <= $as_of
),

judgeable as (
    select * from episodes where win_hi >= win_lo
),

baseline_early as (
    select
        e.ep,
        v.day,
        v.edss,
        row_number() over (partition by e.ep order by v.day desc) as rn
    from judgeable as e
    inner join valid as v
        on v.pk = e.pk
       and v.day between e.start - $baseline_lookback_days and e.start
),

baseline_late as (
    select
        e.ep,
        v.day,
        v.edss,
        row_number() over (partition by e.ep order by v.day) as rn
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
    left join baseline_early as be on be.ep = e.ep and be.rn = 1
    left join baseline_late as bl on bl.ep = e.ep and bl.rn = 1
),

thresholds as (
    select
        *,
        b + case when b < $increase_step_edss then $increase_below else $increase_from end as thr
    from based
),

in_window as (
    select e.ep, l.day, l.edss, l.c_day, l.conf_level, l.pend_level, e.thr
    from thresholds as e
    inner join levels as l
        on l.pk = e.pk
       and l.day between e.win_lo and e.win_hi
),

judged as (
    select
        ep,
        count(*) as n_window,
        max(case when conf_level >= thr then 1 else 0 end) as confirmed,
        max(case when pend_level >= thr then 1 else 0 end) as pending,
        min(case when conf_level >= thr then day end) as w_day
    from in_window
    group by ep
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
    left join judged as j on j.ep = t.ep
    left join in_window as w on w.ep = t.ep and w.day = j.w_day
),

-- The episode shown as evidence: the decisive one, earliest worsening first.
shown as (
    select
        *,
        row_number() over (
            partition by patient_id
            order by
                case ep_status when 'pass' then 0 when 'unknown' then 1 else 2 end,
                w_day nulls last, start, drug, end_date nulls last
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
