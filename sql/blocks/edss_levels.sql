-- edss_levels: the EDSS series and its valid visits, with the levels at which each visit is a
-- confirmed or a pending worsening (docs/criteria-nct04203017.md, "Progression on first- or
-- second-line therapy"). Shared by the progression blocks, which name `valid` and `levels`
-- after `-- include: edss_levels`. Placeholders: $relapse_exclusion_days, $confirmation_days.
-- Dates are whole days since 1970-01-01 (`date_diff`: date minus date is an interval in Spark)
-- so that windows are integer ranges.
--
-- Every window is partitioned by patient: a numbering over all patients (a global
-- `row_number() over (order by patient_id)`) would send every row through one partition in
-- Spark. Orderings name their NULLS place, as DuckDB and Spark default differently.

-- The EDSS series: one value per date (the highest), dated on or before D.
with series as (
    select v.patient_id as pk, date_diff('day', date '1970-01-01', v.visit_date) as day, max(v.edss) as edss
    from visits as v
    where v.edss is not null and v.visit_date <= $as_of
    group by v.patient_id, v.visit_date
),

onsets as (
    select distinct r.patient_id as pk, date_diff('day', date '1970-01-01', r.onset_date) as onset
    from relapses as r
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
            partition by pk order by day nulls last
            range between current row and $confirmation_days - 1 following
        ) as win_min,
        min(edss) over (
            partition by pk order by day nulls last
            rows between current row and unbounded following
        ) as after_min
    from valid
    window confirm_frame as (
        partition by pk order by day nulls last
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
)

select * from levels
