-- Scheduled rules. A rule whose trigger type is `scheduled` has
--   trigger_conditions = {"schedule": "<cron expression>", "timezone": "<IANA zone, default UTC>"}
-- and runs once per tick of its schedule, whichever daemons are running. Every daemon runs the
-- scheduler (src/scheduler/); a tick fires through workflow.fire_scheduled_rule, which records it in
-- workflow.schedule_runs and queues the event in one statement, so that any number of daemons fire
-- each tick exactly once, and a crash either fires it or leaves it for another daemon.

-- One row per fired tick: its primary key is what makes a tick fire once across daemons.
create table workflow.schedule_runs (
  rule_id uuid not null references workflow.automation_rules (id) on delete cascade,
  scheduled_for timestamptz not null,
  fired_at timestamptz not null default now(),
  primary key (rule_id, scheduled_for)
);

-- For pruning (workflow.prune_schedule_runs).
create index idx_schedule_runs_fired_at on workflow.schedule_runs (fired_at);

comment on table workflow.schedule_runs is
  'Ticks of scheduled rules that have fired, one row each; kept for 7 days by the daemon''s maintenance job.';

-- Scheduled ticks are events aimed at their rule (rule_id set, operation 'scheduled'), like
-- run_rule's manual events. workflow.events has no CHECK on operation (see 000004_capture.sql).

-- Checks the schedule of a scheduled rule: a cron expression of 5 fields (minute hour day month
-- weekday) or 6 (with seconds first), and an optional timezone PostgreSQL knows. The daemon parses
-- the expression itself and logs a rule it cannot parse (an out-of-range value, say) as a problem.
create function workflow.check_schedule(p_rule_name text, p_conditions jsonb) returns void
language plpgsql stable as $$
declare
  v_schedule jsonb;
  v_timezone jsonb;
  v_fields int;
begin
  if p_conditions is null or jsonb_typeof(p_conditions) is distinct from 'object' then
    raise exception 'automation rule "%": a scheduled rule needs trigger_conditions with a "schedule", got %',
      p_rule_name, coalesce(p_conditions::text, 'null')
      using errcode = 'invalid_parameter_value',
            hint = 'Write {"schedule": "0 7 * * 1-5", "timezone": "Europe/Berlin"}: a cron expression of 5 fields, or 6 with seconds first.';
  end if;
  v_schedule := p_conditions -> 'schedule';
  if v_schedule is null or jsonb_typeof(v_schedule) <> 'string' or btrim(v_schedule #>> '{}') = '' then
    raise exception 'automation rule "%": a scheduled rule needs trigger_conditions.schedule, a cron expression, got %',
      p_rule_name, coalesce(v_schedule::text, 'nothing')
      using errcode = 'invalid_parameter_value',
            hint = 'Write {"schedule": "0 7 * * 1-5"}: a cron expression of 5 fields, or 6 with seconds first.';
  end if;
  v_fields := cardinality(regexp_split_to_array(btrim(v_schedule #>> '{}'), '\s+'));
  if v_fields not in (5, 6) then
    raise exception 'automation rule "%": schedule "%" has % fields; a cron expression has 5 (minute hour day month weekday) or 6 (second first)',
      p_rule_name, v_schedule #>> '{}', v_fields
      using errcode = 'invalid_parameter_value',
            hint = 'Separate the fields with spaces: "*/15 * * * *" runs every 15 minutes, "*/10 * * * * *" every 10 seconds.';
  end if;
  v_timezone := p_conditions -> 'timezone';
  if v_timezone is not null and jsonb_typeof(v_timezone) <> 'null' then
    if jsonb_typeof(v_timezone) <> 'string'
       or not exists (select 1 from pg_catalog.pg_timezone_names where name = v_timezone #>> '{}') then
      raise exception 'automation rule "%": timezone % is not a time zone name', p_rule_name, v_timezone
        using errcode = 'invalid_parameter_value',
              hint = 'Use an IANA name from pg_timezone_names, such as "Europe/Berlin" or "UTC".';
    end if;
  end if;
end
$$;

-- A trigger of its own, next to check_automation_rule (which it follows: triggers fire in name
-- order). It checks only what it can affect: a rule written, or one whose conditions, trigger type
-- or activation change, so that deactivating a scheduled rule written before this migration works.
create function workflow.check_automation_rule_schedule() returns trigger
language plpgsql as $$
begin
  if tg_op = 'UPDATE'
     and new.trigger_conditions is not distinct from old.trigger_conditions
     and new.trigger_type_id is not distinct from old.trigger_type_id
     and not (new.is_active and not old.is_active) then
    return new;
  end if;
  if exists (select 1 from workflow.trigger_types where id = new.trigger_type_id and name = 'scheduled') then
    perform workflow.check_schedule(new.name, new.trigger_conditions);
  end if;
  return new;
end
$$;

create trigger check_automation_rule_schedule before insert or update on workflow.automation_rules
  for each row execute function workflow.check_automation_rule_schedule();

-- Fires one tick of a scheduled rule: records it and queues an event aimed at the rule, in one
-- statement. Returns the event id, or null when the tick had already fired (another daemon got
-- there first) or the rule is not an active scheduled rule of an active entity (any more). The
-- event's new_row is what templates see at the top level: {{scheduled_for}} (ISO 8601, UTC),
-- {{rule_name}}, {{rule_id}}, {{schedule}}, {{timezone}}.
create function workflow.fire_scheduled_rule(p_rule_id uuid, p_scheduled_for timestamptz) returns bigint
language plpgsql as $$
declare
  v_id bigint;
  v_when text := to_char(p_scheduled_for at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"');
begin
  with rule as (
    select r.id, r.name, r.entity_id, r.trigger_conditions
      from workflow.automation_rules r
      join workflow.trigger_types t on t.id = r.trigger_type_id
      join workflow.entities e on e.id = r.entity_id
     where r.id = p_rule_id and r.is_active and t.name = 'scheduled' and e.is_active is not false
  ), run as (
    insert into workflow.schedule_runs (rule_id, scheduled_for)
    select id, p_scheduled_for from rule
    on conflict (rule_id, scheduled_for) do nothing
    returning rule_id
  )
  insert into workflow.events (entity_id, operation, row_key, old_row, new_row, actor_id, rule_id)
  select rule.entity_id, 'scheduled',
         -- Unique per tick, so that ticks never wait for each other in the queue.
         jsonb_build_object('rule_id', rule.id, 'scheduled_for', v_when),
         null,
         jsonb_build_object('scheduled_for', v_when, 'rule_id', rule.id, 'rule_name', rule.name,
                            'schedule', rule.trigger_conditions ->> 'schedule',
                            'timezone', coalesce(rule.trigger_conditions ->> 'timezone', 'UTC')),
         nullif(current_setting('workflow.actor_id', true), ''),
         rule.id
    from run join rule on rule.id = run.rule_id
  returning id into v_id;
  if v_id is not null then
    perform workflow.wake_daemons();
  end if;
  return v_id;
end
$$;

-- Removes the record of ticks fired longer ago than p_keep; returns how many.
create function workflow.prune_schedule_runs(p_keep interval default '7 days') returns bigint
language plpgsql as $$
declare
  v_count bigint;
begin
  delete from workflow.schedule_runs where fired_at < now() - p_keep;
  get diagnostics v_count = row_count;
  return v_count;
end
$$;
