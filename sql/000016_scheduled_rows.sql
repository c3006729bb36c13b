-- Scheduled rules over rows, time-relative operators, and missed ticks (issue 12, first half).
--
-- A scheduled rule with field_conditions runs once per matching row of its entity at each tick
-- ("for_each_row", see workflow.check_schedule below). The daemon selects the rows in keyset
-- batches of its own SQL (src/scheduler/row-tick.ts); each batch, in one transaction, locks the
-- tick's row in workflow.schedule_runs, queues one event per row and moves the tick's last_key
-- on. So a row is queued once per tick whatever number of daemons run, a daemon that dies in the
-- middle of a batch loses only that uncommitted batch, and any daemon finishes the tick from
-- last_key. The time-relative operators compare with the tick's time, which a resumed tick keeps.

-- What happened to a tick: fired (a rule without rows: its one event is queued), selecting (rows
-- are being queued, last_key is how far), done (every matching row is queued), missed (it passed
-- while no daemon ran, longer ago than RULEBOOK_SCHEDULE_CATCHUP), cancelled (the rule was switched
-- off or changed before its rows were all queued).
alter table workflow.schedule_runs
  add column status text default 'fired'
    constraint schedule_runs_status_check check (status in ('fired', 'selecting', 'done', 'missed', 'cancelled')),
  add column last_key jsonb,
  add column rows_queued bigint default 0,
  add column finished_at timestamptz;

comment on column workflow.schedule_runs.status is
  'fired, selecting (rows being queued), done, missed (passed while no daemon ran, beyond the catch-up window) or cancelled';
comment on column workflow.schedule_runs.last_key is
  'For a tick over rows: the key of the last row queued, where the next batch starts.';

-- Daemons look for ticks whose rows are not all queued yet.
create index idx_schedule_runs_selecting on workflow.schedule_runs (scheduled_for) where status = 'selecting';

create or replace function workflow.condition_operators() returns text[]
language sql immutable parallel safe as $$
  select array['equals', 'not_equals', 'changed_from', 'changed_to', 'changed', 'greater_than',
               'less_than', 'greater_or_equal', 'less_or_equal', 'contains', 'in', 'not_in',
               'is_null', 'is_not_null', 'older_than', 'newer_than', 'within_next']
$$;

-- What is wrong with an interval written in a time-relative condition, or null when nothing is.
-- The grammar is the one src/conditions/time-interval.ts reads (the daemon computes the instants,
-- so both must agree): ISO 8601 durations of whole numbers ("P2D", "PT36H", "P1Y2M3W4DT5H6M7S"),
-- or whole numbers with units ("2 days", "1 hour 30 minutes"), longer than zero.
create function workflow.time_interval_problem(p_value jsonb) returns text
language plpgsql immutable parallel safe as $$
declare
  v_text text;
begin
  if p_value is null or jsonb_typeof(p_value) <> 'string' then
    return format('needs "value" to be an interval such as "2 days" or "PT36H", got %s',
                  coalesce(p_value::text, 'nothing'));
  end if;
  v_text := btrim(p_value #>> '{}');
  if upper(v_text) ~ '^P(?=\d|T\d)(\d+Y)?(\d+M)?(\d+W)?(\d+D)?(T(?=\d)(\d+H)?(\d+M)?(\d+S)?)?$'
     or lower(v_text) ~ '^(\d+ *(years?|months?|weeks?|days?|hours?|minutes?|mins?|seconds?|secs?))( +\d+ *(years?|months?|weeks?|days?|hours?|minutes?|mins?|seconds?|secs?))*$' then
    if v_text !~ '[1-9]' then
      return format('needs an interval longer than zero, got %s', p_value);
    end if;
    return null;
  end if;
  return format('needs "value" to be an interval such as "2 days", "1 hour 30 minutes" or "PT36H" (whole numbers), got %s',
                p_value);
end
$$;

-- As in 000003, plus: the time-relative operators need a valid interval and (when the table is
-- known) a date or timestamp column; a scheduled rule's conditions are evaluated in SQL at each
-- tick, so they may not compare old and new values, and their values must be valid for the
-- column's type (refused now rather than failing every tick).
create or replace function workflow.check_trigger_conditions(
  p_rule_name text, p_conditions jsonb, p_relation regclass, p_trigger_type text
) returns void
language plpgsql stable as $$
declare
  v_conditions jsonb;
  v_condition jsonb;
  v_index int := 0;
  v_field text;
  v_operator text;
  v_where text;
  v_problem text;
  v_type regtype;
  v_type_name text;
  v_value jsonb;
begin
  if p_conditions is null or jsonb_typeof(p_conditions) = 'null' then
    return;
  end if;
  if jsonb_typeof(p_conditions) <> 'object' then
    raise exception 'automation rule "%": trigger_conditions must be a JSON object, got %',
      p_rule_name, jsonb_typeof(p_conditions)
      using errcode = 'invalid_parameter_value',
            hint = 'Write {"field_conditions": [{"field_name": "status", "operator": "equals", "value": "shipped"}]}.';
  end if;
  v_conditions := p_conditions -> 'field_conditions';
  if v_conditions is null or jsonb_typeof(v_conditions) = 'null' then
    return;
  end if;
  if jsonb_typeof(v_conditions) <> 'array' then
    raise exception 'automation rule "%": trigger_conditions.field_conditions must be an array, got %',
      p_rule_name, jsonb_typeof(v_conditions)
      using errcode = 'invalid_parameter_value';
  end if;
  for v_condition in select value from jsonb_array_elements(v_conditions) loop
    v_where := format('automation rule "%s": trigger_conditions.field_conditions[%s]', p_rule_name, v_index);
    if jsonb_typeof(v_condition) <> 'object' then
      raise exception '%: each condition must be a JSON object, got %', v_where, jsonb_typeof(v_condition)
        using errcode = 'invalid_parameter_value';
    end if;
    if jsonb_typeof(v_condition -> 'field_name') is distinct from 'string' then
      raise exception '%: field_name is missing or not a string', v_where
        using errcode = 'invalid_parameter_value';
    end if;
    v_field := v_condition ->> 'field_name';
    if jsonb_typeof(v_condition -> 'operator') is distinct from 'string' then
      raise exception '%: operator is missing or not a string', v_where
        using errcode = 'invalid_parameter_value';
    end if;
    v_operator := v_condition ->> 'operator';
    if not v_operator = any (workflow.condition_operators()) then
      raise exception '%: unknown operator "%"', v_where, v_operator
        using errcode = 'invalid_parameter_value',
              hint = 'Known operators: ' || array_to_string(workflow.condition_operators(), ', ') || '.';
    end if;
    v_type := null;
    if p_relation is not null then
      select atttypid::regtype into v_type
        from pg_catalog.pg_attribute
       where attrelid = p_relation and attname = v_field and attnum > 0 and not attisdropped;
      if not found then
        raise exception '%: field_name "%" is not a column of %', v_where, v_field, p_relation
          using errcode = 'undefined_column';
      end if;
    end if;
    if v_operator in ('in', 'not_in') and jsonb_typeof(v_condition -> 'value') is distinct from 'array' then
      raise exception '%: operator "%" needs "value" to be an array, got %', v_where, v_operator,
        coalesce(jsonb_typeof(v_condition -> 'value'), 'nothing')
        using errcode = 'invalid_parameter_value';
    end if;
    if v_operator in ('equals', 'not_equals', 'changed_to', 'greater_than', 'less_than',
                      'greater_or_equal', 'less_or_equal', 'contains')
       and not v_condition ? 'value' then
      raise exception '%: operator "%" needs a "value"', v_where, v_operator
        using errcode = 'invalid_parameter_value';
    end if;
    if v_operator = 'changed_from' and not v_condition ? 'previous_value' then
      raise exception '%: operator "changed_from" needs a "previous_value"', v_where
        using errcode = 'invalid_parameter_value';
    end if;
    if v_operator in ('changed_from', 'changed_to', 'changed')
       and p_trigger_type in ('on_create', 'on_delete', 'scheduled') then
      raise exception '%: operator "%" compares old and new values, so it only applies to on_update rules, not %',
        v_where, v_operator, p_trigger_type
        using errcode = 'invalid_parameter_value';
    end if;
    if v_operator in ('older_than', 'newer_than', 'within_next') then
      v_problem := workflow.time_interval_problem(v_condition -> 'value');
      if v_problem is not null then
        raise exception '%: operator "%" %', v_where, v_operator, v_problem
          using errcode = 'invalid_parameter_value',
                hint = 'Write "2 days", "36 hours", "1 hour 30 minutes", "P2D" or "PT36H".';
      end if;
      if v_type is not null
         and v_type not in ('date'::regtype, 'timestamp'::regtype, 'timestamptz'::regtype) then
        raise exception '%: operator "%" needs a date or timestamp column, and "%" is %',
          v_where, v_operator, v_field, format_type(v_type, null)
          using errcode = 'invalid_parameter_value';
      end if;
    end if;
    -- At the tick the values are cast to the column's type: a value that cannot be is refused now.
    if p_trigger_type = 'scheduled' and v_type is not null
       and v_operator in ('equals', 'not_equals', 'greater_than', 'less_than', 'greater_or_equal',
                          'less_or_equal', 'in', 'not_in') then
      v_type_name := format_type(v_type, null);
      for v_value in
        select x from jsonb_array_elements(
          case when v_operator in ('in', 'not_in') then v_condition -> 'value'
               else jsonb_build_array(v_condition -> 'value') end) x
      loop
        continue when jsonb_typeof(v_value) = 'null';
        begin
          execute format('select %L::%s', case jsonb_typeof(v_value) when 'string' then v_value #>> '{}'
                                                                      else v_value::text end, v_type_name);
        exception when others then
          raise exception '%: value % is not a valid % for column "%"', v_where, v_value, v_type_name, v_field
            using errcode = 'invalid_parameter_value';
        end;
      end loop;
    end if;
    v_index := v_index + 1;
  end loop;
end
$$;

-- As in 000009, plus for_each_row: whether the rule runs once per tick (false, the default
-- without field_conditions) or once per matching row (true, the default with them). Rows are
-- selected by field_conditions, so a rule that says false may not have any.
create or replace function workflow.check_schedule(p_rule_name text, p_conditions jsonb) returns void
language plpgsql stable as $$
declare
  v_schedule jsonb;
  v_timezone jsonb;
  v_fields int;
  v_each jsonb;
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
  v_each := p_conditions -> 'for_each_row';
  if v_each is not null and jsonb_typeof(v_each) not in ('boolean', 'null') then
    raise exception 'automation rule "%": trigger_conditions.for_each_row must be true or false, got %',
      p_rule_name, v_each
      using errcode = 'invalid_parameter_value';
  end if;
  if v_each = 'false'::jsonb
     and jsonb_typeof(p_conditions -> 'field_conditions') = 'array'
     and jsonb_array_length(p_conditions -> 'field_conditions') > 0 then
    raise exception 'automation rule "%": field_conditions select the rows a scheduled rule runs for, so for_each_row cannot be false with them',
      p_rule_name
      using errcode = 'invalid_parameter_value',
            hint = 'Drop for_each_row (or set it true) to run once per matching row; drop field_conditions to run once per tick.';
  end if;
end
$$;

-- The maintenance job prunes ticks in batches (src/retention/batches.ts) by the tick's time on its
-- own clock (src/clock.ts), which tests move, not by fired_at, which is the database's; a tick still
-- selecting rows is never pruned, and neither is a rule's newest tick, where the scheduler resumes.
-- The unbatched function of 000009 and its fired_at index go: nothing calls them any more.
drop function workflow.prune_schedule_runs(interval);
drop index workflow.idx_schedule_runs_fired_at;
create index idx_schedule_runs_prune on workflow.schedule_runs (scheduled_for) where status <> 'selecting';

-- What reading a relation for a scheduled rule over rows would run of a role that is not a
-- superuser, as the daemon: the casts and output functions to_jsonb(t) and t::text call (as for
-- capture, workflow.capture_hazards), the comparison operators of the columns the conditions name,
-- and the functions a view's query calls directly. The daemon cancels a tick over such a relation
-- rather than run that code with its privileges (src/scheduler/scheduler.ts).
create function workflow.row_selection_hazards(p_relation regclass, p_columns text[])
returns table (hazard text, function_name regprocedure, function_owner name)
language sql stable
set search_path = pg_catalog, pg_temp
as $$
  select format('column %s: %s of %s', h.column_name, h.hazard, h.hazard_type), h.function_name, h.function_owner
    from workflow.capture_hazards(p_relation) h
  union
  select format('column %s: operator %s', a.attname, o.oprname), p.oid::regprocedure, r.rolname
    from pg_attribute a
    join pg_operator o on o.oprleft = a.atttypid and o.oprright = a.atttypid
                      and o.oprname in ('=', '<>', '<', '>', '<=', '>=')
    join pg_proc p on p.oid = o.oprcode
    join pg_roles r on r.oid = p.proowner
   where a.attrelid = p_relation and a.attname = any (p_columns) and a.attnum > 0 and not a.attisdropped
     and not r.rolsuper
  union
  select 'the view calls ' || p.oid::regprocedure::text, p.oid::regprocedure, r.rolname
    from pg_rewrite rw
    join pg_depend d on d.classid = 'pg_rewrite'::regclass and d.objid = rw.oid
                    and d.refclassid = 'pg_proc'::regclass
    join pg_proc p on p.oid = d.refobjid
    join pg_roles r on r.oid = p.proowner
   where rw.ev_class = p_relation and not r.rolsuper
$$;
