-- The public contract: tables, columns, types, nullability and defaults exactly as the schema
-- document gives them. Checks and behaviour beyond the document live in later migrations.
create schema if not exists workflow;

create table workflow.trigger_types (
  id uuid not null default gen_random_uuid() primary key,
  name text not null unique,
  description text,
  is_active boolean not null default true,
  deactivated_by uuid references core.users (id)
);

create table workflow.entity_types (
  id uuid not null default gen_random_uuid() primary key,
  name text not null unique,
  description text,
  is_active boolean not null default true,
  deactivated_by uuid references core.users (id)
);

create table workflow.entities (
  id uuid not null default gen_random_uuid() primary key,
  name text not null unique,
  entity_type_id uuid not null references workflow.entity_types (id),
  schema_name text default 'public',
  is_active boolean default true,
  created_date timestamptz not null default now(),
  deactivated_by uuid references core.users (id)
);

create table workflow.automation_rules (
  id uuid not null default gen_random_uuid() primary key,
  name text not null,
  description text,
  entity_id uuid not null references workflow.entities (id),
  entity_type_id uuid not null references workflow.entity_types (id),
  trigger_type_id uuid not null references workflow.trigger_types (id),
  trigger_conditions jsonb,
  is_active boolean not null default true,
  created_date timestamptz not null default now(),
  updated_date timestamptz not null default now(),
  created_by uuid not null references core.users (id),
  updated_by uuid not null references core.users (id),
  deactivated_by uuid references core.users (id)
);

create table workflow.action_templates (
  id uuid not null default gen_random_uuid() primary key,
  name text not null unique,
  description text,
  action_type text not null,
  default_config jsonb not null,
  created_date timestamptz not null default now(),
  created_by uuid not null references core.users (id),
  is_active boolean default true,
  deactivated_by uuid references core.users (id)
);

create table workflow.rule_actions (
  id uuid not null default gen_random_uuid() primary key,
  automation_rules_id uuid not null references workflow.automation_rules (id),
  name text not null,
  description text,
  action_config jsonb not null,
  execution_order int not null,
  is_active boolean default true,
  template_id uuid references workflow.action_templates (id),
  deactivated_by uuid references core.users (id)
);

create table workflow.rule_dependencies (
  id uuid not null default gen_random_uuid() primary key,
  parent_rule_id uuid not null references workflow.automation_rules (id),
  child_rule_id uuid not null references workflow.automation_rules (id)
);

create table workflow.automation_executions (
  id uuid not null default gen_random_uuid() primary key,
  automation_rules_id uuid not null references workflow.automation_rules (id),
  entity_type varchar(50) not null,
  trigger_data jsonb,
  actions_executed jsonb,
  status varchar(20) not null,
  error_message text,
  execution_time_ms integer,
  executed_at timestamp not null default now()
);

create table workflow.notification_deliveries (
  id uuid not null default gen_random_uuid() primary key,
  notification_id uuid not null,
  automation_execution_id uuid references workflow.automation_executions (id),
  rule_id uuid references workflow.automation_rules (id),
  action_id uuid references workflow.rule_actions (id),
  recipient_id uuid not null,
  channel varchar(50) not null,
  status varchar(20) not null,
  attempts integer default 1,
  sent_at timestamp,
  delivered_at timestamp,
  failed_at timestamp,
  error_message text,
  provider_response jsonb,
  created_date timestamp not null default now(),
  updated_date timestamp not null default now()
);

create table workflow.allocation_results (
  id uuid not null primary key,
  idempotency_key varchar(255) not null,
  allocation_data jsonb not null,
  created_date timestamp not null
);

create table workflow.alerts (
  id uuid not null default gen_random_uuid() primary key,
  alert_type text not null,
  severity text not null default 'medium',
  title text not null,
  message text not null,
  context jsonb default '{}',
  source_entity_name text,
  source_entity_id uuid,
  source_rule_id uuid references workflow.automation_rules (id),
  status text not null default 'active',
  expires_date timestamptz,
  created_date timestamptz not null default now(),
  updated_date timestamptz not null default now()
);

create table workflow.alert_recipients (
  id uuid not null default gen_random_uuid() primary key,
  alert_id uuid not null references workflow.alerts (id) on delete cascade,
  recipient_type text not null,
  recipient_id uuid not null,
  created_date timestamptz not null default now()
);

create table workflow.alert_acknowledgments (
  id uuid not null default gen_random_uuid() primary key,
  alert_id uuid not null references workflow.alerts (id) on delete cascade,
  acknowledged_by uuid not null references core.users (id),
  acknowledged_date timestamp not null,
  notes text
);

-- The document's index list names two columns that do not exist (automation_rule_id, rule_id);
-- these index the real ones.
create index idx_automation_rules_entity on workflow.automation_rules (entity_id);
create index idx_automation_rules_trigger on workflow.automation_rules (trigger_type_id);
create index idx_automation_rules_active on workflow.automation_rules (is_active);
create index idx_rule_actions_rule on workflow.rule_actions (automation_rules_id);
create index idx_rule_actions_order on workflow.rule_actions (execution_order);
create index idx_automation_executions_rule on workflow.automation_executions (automation_rules_id);
create index idx_automation_executions_status on workflow.automation_executions (status);
create index idx_automation_executions_date on workflow.automation_executions (executed_at);
create index idx_alerts_status on workflow.alerts (status);
create index idx_alerts_created on workflow.alerts (created_date);
create index idx_alert_recipients_alert on workflow.alert_recipients (alert_id);
create index idx_alert_recipients_recipient on workflow.alert_recipients (recipient_type, recipient_id);
-- Unique, because the key exists to deduplicate.
create unique index idx_allocation_idempotency on workflow.allocation_results (idempotency_key);
-- Foreign keys that are searched from the referenced side.
create index idx_rule_dependencies_parent on workflow.rule_dependencies (parent_rule_id);
create index idx_rule_dependencies_child on workflow.rule_dependencies (child_rule_id);
create index idx_alert_acknowledgments_alert on workflow.alert_acknowledgments (alert_id);
create index idx_notification_deliveries_execution on workflow.notification_deliveries (automation_execution_id);

insert into workflow.trigger_types (name, description) values
  ('on_create', 'A row was inserted'),
  ('on_update', 'A row was updated'),
  ('on_delete', 'A row was deleted'),
  ('scheduled', 'Runs on a schedule');

insert into workflow.entity_types (name, description) values
  ('table', 'A database table'),
  ('view', 'A database view');
