-- The database itself refuses bad rules, so a DBA writing plain SQL gets the error at once, with a
-- SQLSTATE to match on and a message that names the rule and the field.

alter table workflow.automation_executions
  add constraint automation_executions_status_check
  check (status in ('success', 'failed', 'partial', 'skipped'));

alter table workflow.notification_deliveries
  add constraint notification_deliveries_status_check
  check (status in ('pending', 'sent', 'delivered', 'failed', 'bounced', 'retrying'));

alter table workflow.alerts
  add constraint alerts_severity_check check (severity in ('low', 'medium', 'high', 'critical')),
  add constraint alerts_status_check check (status in ('active', 'acknowledged', 'dismissed', 'resolved'));

alter table workflow.alert_recipients
  add constraint alert_recipients_recipient_type_check check (recipient_type in ('user', 'role'));

alter table workflow.rule_actions
  add constraint rule_actions_execution_order_check check (execution_order >= 1),
  -- Deferrable so that one UPDATE can renumber a rule's actions without tripping over itself.
  add constraint rule_actions_execution_order_unique unique (automation_rules_id, execution_order)
    deferrable initially immediate;

alter table workflow.rule_dependencies
  add constraint rule_dependencies_not_self check (parent_rule_id <> child_rule_id),
  add constraint rule_dependencies_unique unique (parent_rule_id, child_rule_id);

-- updated_date maintains itself.
create function workflow.touch_updated_date() returns trigger
language plpgsql as $$
begin
  new.updated_date := now();
  return new;
end
$$;

create trigger touch_updated_date before update on workflow.automation_rules
  for each row execute function workflow.touch_updated_date();
create trigger touch_updated_date before update on workflow.alerts
  for each row execute function workflow.touch_updated_date();
create trigger touch_updated_date before update on workflow.notification_deliveries
  for each row execute function workflow.touch_updated_date();

-- The operators a field condition may use, and what each needs.
create function workflow.condition_operators() returns text[]
language sql immutable parallel safe as $$
  select array['equals', 'not_equals', 'changed_from', 'changed_to', 'changed', 'greater_than',
               'less_than', 'greater_or_equal', 'less_or_equal', 'contains', 'in', 'not_in',
               'is_null', 'is_not_null']
$$;

-- The relation an entity row names, or null when there is none.
create function workflow.entity_relation(p_schema_name text, p_name text) returns regclass
language sql stable as $$
  select to_regclass(format('%I.%I', coalesce(p_schema_name, 'public'), p_name))
$$;

create function workflow.check_trigger_conditions(
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
    if p_relation is not null and not exists (
      select 1 from pg_catalog.pg_attribute
      where attrelid = p_relation and attname = v_field and attnum > 0 and not attisdropped
    ) then
      raise exception '%: field_name "%" is not a column of %', v_where, v_field, p_relation
        using errcode = 'undefined_column';
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
    if v_operator in ('changed_from', 'changed_to', 'changed') and p_trigger_type in ('on_create', 'on_delete') then
      raise exception '%: operator "%" compares old and new values, so it only applies to on_update rules, not %',
        v_where, v_operator, p_trigger_type
        using errcode = 'invalid_parameter_value';
    end if;
    v_index := v_index + 1;
  end loop;
end
$$;

create function workflow.check_automation_rule() returns trigger
language plpgsql as $$
declare
  v_entity workflow.entities;
  v_entity_type text;
  v_trigger_type text;
  v_relation regclass;
begin
  select * into v_entity from workflow.entities where id = new.entity_id;
  if not found then
    return new; -- the foreign key reports it
  end if;
  if v_entity.entity_type_id <> new.entity_type_id then
    raise exception 'automation rule "%": entity_type_id % does not match the entity_type_id % of entity "%"',
      new.name, new.entity_type_id, v_entity.entity_type_id, v_entity.name
      using errcode = 'check_violation',
            hint = 'Use the entity_type_id of the entity the rule watches.';
  end if;
  select name into v_entity_type from workflow.entity_types where id = v_entity.entity_type_id;
  select name into v_trigger_type from workflow.trigger_types where id = new.trigger_type_id;
  if v_entity_type = 'view' and v_trigger_type in ('on_create', 'on_update', 'on_delete') then
    raise exception 'automation rule "%": entity "%" is a view, whose changes cannot be captured; only scheduled rules may watch it',
      new.name, v_entity.name
      using errcode = 'invalid_parameter_value';
  end if;
  v_relation := workflow.entity_relation(v_entity.schema_name, v_entity.name);
  perform workflow.check_trigger_conditions(new.name, new.trigger_conditions, v_relation, v_trigger_type);
  return new;
end
$$;

create trigger check_automation_rule before insert or update on workflow.automation_rules
  for each row execute function workflow.check_automation_rule();

-- A dependency may not close a cycle. The advisory lock serialises dependency edits so that two
-- concurrent transactions cannot each add one half of a cycle.
create function workflow.check_rule_dependency() returns trigger
language plpgsql as $$
declare
  v_cycle uuid[];
  v_names text;
begin
  perform pg_advisory_xact_lock(hashtext('rulebook.rule_dependencies'));
  -- Walk down from the new child; reaching the new parent closes a cycle.
  with recursive walk (rule_id, path) as (
    select new.child_rule_id, array[new.parent_rule_id, new.child_rule_id]
    union all
    select d.child_rule_id, w.path || d.child_rule_id
    from walk w
    join workflow.rule_dependencies d on d.parent_rule_id = w.rule_id
    where d.id <> new.id and not d.child_rule_id = any (w.path[2:])
  )
  select path into v_cycle from walk where rule_id = new.parent_rule_id and array_length(path, 1) > 2
  limit 1;
  if v_cycle is not null then
    select string_agg(format('"%s"', coalesce(r.name, p.id::text)), ' -> ' order by p.ord)
      into v_names
      from unnest(v_cycle) with ordinality as p (id, ord)
      left join workflow.automation_rules r on r.id = p.id;
    raise exception 'rule dependency would close a cycle: %', v_names
      using errcode = 'check_violation',
            hint = 'Rule dependencies must form a directed acyclic graph.';
  end if;
  return new;
end
$$;

create trigger check_rule_dependency before insert or update on workflow.rule_dependencies
  for each row when (new.parent_rule_id <> new.child_rule_id)
  execute function workflow.check_rule_dependency();
