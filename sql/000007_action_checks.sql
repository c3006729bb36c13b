-- Checks on action configs at rule-writing time, alert expiry, and releasing inventory
-- allocations.
--
-- create_alert: a DBA who names a user or role that does not exist, or a severity that is not one of
-- the four, gets the error from the INSERT or UPDATE of workflow.rule_actions (or
-- workflow.action_templates) itself, with a SQLSTATE to match on (23503 for an unknown recipient,
-- 22023 for a bad value) and a message naming the rule action and the id. A recipient deleted after
-- the rule was written is caught when the action runs, as a failed action.

-- An action's effective config, as the daemon computes it (src/engine/merge-config.ts): the
-- template's default_config overlaid by action_config; objects merge key by key, recursively; arrays
-- and scalars replace; a JSON null removes the template's key.
create function workflow.merge_action_config(p_defaults jsonb, p_overrides jsonb) returns jsonb
language plpgsql immutable parallel safe as $$
declare
  v_result jsonb := case when jsonb_typeof(p_defaults) = 'object' then p_defaults else '{}'::jsonb end;
  v_key text;
  v_value jsonb;
begin
  if jsonb_typeof(p_overrides) is distinct from 'object' then
    return v_result;
  end if;
  for v_key, v_value in select key, value from jsonb_each(p_overrides) loop
    if jsonb_typeof(v_value) = 'null' then
      v_result := v_result - v_key;
    elsif jsonb_typeof(v_value) = 'object' and jsonb_typeof(v_result -> v_key) = 'object' then
      v_result := v_result || jsonb_build_object(v_key, workflow.merge_action_config(v_result -> v_key, v_value));
    else
      v_result := v_result || jsonb_build_object(v_key, v_value);
    end if;
  end loop;
  return v_result;
end
$$;

-- Checks a create_alert config. p_where names what is checked, for the message. p_complete: the
-- config is what an action will run with (a rule action), so title, message and a recipient must be
-- there; a template's default_config may leave them to its actions.
create function workflow.check_create_alert_config(p_where text, p_config jsonb, p_complete boolean)
returns void
language plpgsql stable as $$
declare
  v_value jsonb;
  v_recipients jsonb;
  v_kind text;
  v_id jsonb;
  v_count int := 0;
  v_field text;
begin
  if jsonb_typeof(p_config) is distinct from 'object' then
    raise exception '%: the create_alert config must be a JSON object', p_where
      using errcode = 'invalid_parameter_value';
  end if;

  v_value := p_config -> 'severity';
  if v_value is not null and jsonb_typeof(v_value) <> 'null'
     and not (jsonb_typeof(v_value) = 'string' and v_value #>> '{}' in ('low', 'medium', 'high', 'critical')) then
    raise exception '%: create_alert severity % is not one of low, medium, high, critical', p_where, v_value
      using errcode = 'invalid_parameter_value';
  end if;

  v_value := p_config -> 'expires_in';
  if v_value is not null and jsonb_typeof(v_value) <> 'null' then
    if jsonb_typeof(v_value) <> 'string' then
      raise exception '%: create_alert expires_in must be an interval such as "2 hours", got %', p_where, v_value
        using errcode = 'invalid_parameter_value';
    end if;
    begin
      perform (v_value #>> '{}')::interval;
    exception when data_exception then
      raise exception '%: create_alert expires_in % is not an interval', p_where, v_value
        using errcode = 'invalid_parameter_value',
              hint = 'Write a PostgreSQL interval: "90 minutes", "2 days", "P1D".';
    end;
  end if;

  v_recipients := p_config -> 'recipients';
  if v_recipients is not null and jsonb_typeof(v_recipients) <> 'null' then
    if jsonb_typeof(v_recipients) <> 'object' then
      raise exception '%: create_alert recipients must be an object such as {"users": [...], "roles": [...]}', p_where
        using errcode = 'invalid_parameter_value';
    end if;
    foreach v_kind in array array['users', 'roles'] loop
      v_value := v_recipients -> v_kind;
      continue when v_value is null or jsonb_typeof(v_value) = 'null';
      if jsonb_typeof(v_value) <> 'array' then
        raise exception '%: create_alert recipients.% must be an array of uuids', p_where, v_kind
          using errcode = 'invalid_parameter_value';
      end if;
      for v_id in select value from jsonb_array_elements(v_value) loop
        if jsonb_typeof(v_id) <> 'string'
           or (v_id #>> '{}') !~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' then
          raise exception '%: create_alert recipients.% contains %, which is not a uuid', p_where, v_kind, v_id
            using errcode = 'invalid_parameter_value';
        end if;
        if v_kind = 'users' and not exists (select 1 from core.users u where u.id = (v_id #>> '{}')::uuid) then
          raise exception '%: create_alert recipient user % does not exist in core.users', p_where, v_id #>> '{}'
            using errcode = 'foreign_key_violation';
        end if;
        if v_kind = 'roles' and not exists (select 1 from core.roles r where r.id = (v_id #>> '{}')::uuid) then
          raise exception '%: create_alert recipient role % does not exist in core.roles', p_where, v_id #>> '{}'
            using errcode = 'foreign_key_violation';
        end if;
        v_count := v_count + 1;
      end loop;
    end loop;
  end if;

  foreach v_field in array array['title', 'message', 'alert_type'] loop
    v_value := p_config -> v_field;
    if v_value is not null and jsonb_typeof(v_value) <> 'null'
       and (jsonb_typeof(v_value) <> 'string' or v_value #>> '{}' = '') then
      raise exception '%: create_alert % must be a non-empty string', p_where, v_field
        using errcode = 'invalid_parameter_value';
    end if;
  end loop;

  if p_complete then
    foreach v_field in array array['title', 'message'] loop
      if jsonb_typeof(p_config -> v_field) is distinct from 'string' then
        raise exception '%: create_alert needs a non-empty % template', p_where, v_field
          using errcode = 'invalid_parameter_value';
      end if;
    end loop;
    if v_count = 0 then
      raise exception '%: create_alert needs at least one recipient in recipients.users or recipients.roles', p_where
        using errcode = 'invalid_parameter_value';
    end if;
  end if;
end
$$;

-- The action type and effective config of a rule action, as the daemon resolves them: a template's
-- action_type wins over action_config.action_type.
create function workflow.check_rule_action_config(p_action workflow.rule_actions) returns void
language plpgsql stable as $$
declare
  v_template workflow.action_templates;
  v_type text;
  v_config jsonb;
  v_rule_name text;
begin
  if p_action.template_id is not null then
    select * into v_template from workflow.action_templates where id = p_action.template_id;
    if not found then
      return; -- the foreign key reports it
    end if;
    v_type := coalesce(v_template.action_type, p_action.action_config ->> 'action_type');
    v_config := workflow.merge_action_config(v_template.default_config, p_action.action_config);
  else
    v_type := case when jsonb_typeof(p_action.action_config -> 'action_type') = 'string'
                   then p_action.action_config ->> 'action_type' end;
    v_config := p_action.action_config;
  end if;
  if v_type is distinct from 'create_alert' then
    return;
  end if;
  select name into v_rule_name from workflow.automation_rules where id = p_action.automation_rules_id;
  perform workflow.check_create_alert_config(
    format('rule action "%s" (%s) of rule "%s"', p_action.name, p_action.id, coalesce(v_rule_name, p_action.automation_rules_id::text)),
    v_config, true);
end
$$;

create function workflow.check_rule_action() returns trigger
language plpgsql as $$
begin
  perform workflow.check_rule_action_config(new);
  return new;
end
$$;

-- Only when the config or the template changes: deactivating an action whose recipient has since
-- been deleted must still work.
create trigger check_rule_action before insert or update of action_config, template_id on workflow.rule_actions
  for each row execute function workflow.check_rule_action();

create function workflow.check_action_template() returns trigger
language plpgsql as $$
declare
  v_action workflow.rule_actions;
begin
  if new.action_type = 'create_alert' then
    perform workflow.check_create_alert_config(
      format('action template "%s" (%s)', new.name, new.id), new.default_config, false);
  end if;
  if tg_op = 'UPDATE' then
    -- The template's actions run with the new defaults: they must still be complete.
    for v_action in select * from workflow.rule_actions where template_id = new.id and is_active is not false loop
      if new.action_type = 'create_alert' then
        perform workflow.check_create_alert_config(
          format('rule action "%s" (%s), through action template "%s"', v_action.name, v_action.id, new.name),
          workflow.merge_action_config(new.default_config, v_action.action_config), true);
      end if;
    end loop;
  end if;
  return new;
end
$$;

create trigger check_action_template before insert or update of action_type, default_config on workflow.action_templates
  for each row execute function workflow.check_action_template();

-- Alerts whose expires_date has passed are no longer active, whether or not anything has updated
-- them yet. This view is what "active" means; workflow.expire_alerts() makes the table agree.
create view workflow.active_alerts as
select a.*
  from workflow.alerts a
 where a.status = 'active' and (a.expires_date is null or a.expires_date > now());

comment on view workflow.active_alerts is
  'Alerts that are active and not expired (expires_date is null or in the future).';

create index idx_alerts_active_expiry on workflow.alerts (expires_date)
  where status = 'active' and expires_date is not null;

-- Marks expired active alerts resolved (the system resolved them) and returns how many. Call it
-- from a scheduler (pg_cron, a cron job); until then the view already leaves them out.
create function workflow.expire_alerts() returns bigint
language plpgsql as $$
declare
  v_count bigint;
begin
  update workflow.alerts set status = 'resolved'
   where status = 'active' and expires_date <= now();
  get diagnostics v_count = row_count;
  return v_count;
end
$$;

-- Inventory allocations (the allocate_inventory action). Each workflow.allocation_results row
-- records the inventory table, the column it added to (allocation_data.inventory) and, per lot,
-- the primary key and quantity (allocation_data.allocated_items), which is all it takes to give the
-- stock back.

-- Gives back the stock of one allocation or reservation and marks it released (released_at and
-- release_reason in allocation_data). Returns false when there was nothing to release: a failed
-- allocation, or one already released or fulfilled. An application that ships reserved stock sets
-- allocation_data.fulfilled_at, so that the reservation is never released.
create function workflow.release_allocation(p_allocation_id uuid, p_reason text default 'released') returns boolean
language plpgsql as $$
declare
  v_data jsonb;
  v_relation regclass;
  v_column text;
  v_item jsonb;
  v_where text;
  v_keys int;
  v_rows int;
begin
  -- The lock every allocation takes first (src/actions/allocate-inventory.ts): stock is given back
  -- in the same order that it is taken, so the two never deadlock.
  perform pg_advisory_xact_lock(hashtextextended('rulebook.allocate_inventory', 0));
  select allocation_data into v_data from workflow.allocation_results where id = p_allocation_id for update;
  if not found then
    raise exception 'workflow.release_allocation: there is no allocation result %', p_allocation_id
      using errcode = 'no_data_found';
  end if;
  if v_data ->> 'status' not in ('success', 'partial') or v_data ? 'released_at' or v_data ? 'fulfilled_at' then
    return false;
  end if;
  v_relation := workflow.entity_relation(v_data #>> '{inventory,schema}', v_data #>> '{inventory,name}');
  v_column := v_data #>> '{inventory,quantity_column}';
  if v_relation is null or v_column is null then
    raise exception 'workflow.release_allocation: allocation % names inventory table %, which does not exist',
      p_allocation_id, v_data #>> '{inventory,table}'
      using errcode = 'undefined_table';
  end if;
  for v_item in select value from jsonb_array_elements(v_data -> 'allocated_items') loop
    select string_agg(format('%I = ($2 ->> %L)::%s', a.attname, a.attname, format_type(a.atttypid, a.atttypmod)), ' and '),
           count(*)
      into v_where, v_keys
      from jsonb_object_keys(v_item -> 'lot_key') k
      join pg_catalog.pg_attribute a on a.attrelid = v_relation and a.attname = k and a.attnum > 0 and not a.attisdropped;
    if v_keys = 0 or v_keys <> (select count(*) from jsonb_object_keys(v_item -> 'lot_key')) then
      raise exception 'workflow.release_allocation: allocation % names lot %, but % has no such key columns',
        p_allocation_id, v_item -> 'lot_key', v_relation
        using errcode = 'undefined_column';
    end if;
    execute format('update %s set %I = greatest(coalesce(%I, 0) - $1, 0) where %s', v_relation, v_column, v_column, v_where)
      using (v_item ->> 'quantity')::numeric, v_item -> 'lot_key';
    get diagnostics v_rows = row_count;
    if v_rows = 0 then
      raise warning 'workflow.release_allocation: lot % of allocation % is gone from %; nothing to give back for it',
        v_item -> 'lot_key', p_allocation_id, v_relation;
    end if;
  end loop;
  update workflow.allocation_results
     set allocation_data = allocation_data || jsonb_build_object('released_at', now(), 'release_reason', p_reason)
   where id = p_allocation_id;
  return true;
end
$$;

-- Releases every reservation (mode "reserve") whose expires_at has passed and that is neither
-- released nor fulfilled; returns how many. Call it from a scheduler.
create function workflow.release_expired_reservations() returns integer
language plpgsql as $$
declare
  v_id uuid;
  v_count int := 0;
begin
  perform pg_advisory_xact_lock(hashtextextended('rulebook.allocate_inventory', 0));
  for v_id in
    select r.id
      from workflow.allocation_results r
     where r.allocation_data ->> 'mode' = 'reserve'
       and r.allocation_data ->> 'status' in ('success', 'partial')
       and (r.allocation_data ->> 'expires_at')::timestamptz <= now()
       and not (r.allocation_data ? 'released_at' or r.allocation_data ? 'fulfilled_at')
     order by r.created_date, r.id
  loop
    if workflow.release_allocation(v_id, 'reservation expired') then
      v_count := v_count + 1;
    end if;
  end loop;
  return v_count;
end
$$;
