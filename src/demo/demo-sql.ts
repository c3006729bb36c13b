// The demo, written as a DBA would write it: plain SQL, in one script that `rulebook demo` runs in
// one transaction and `rulebook demo --sql` prints. It is documentation as much as sample data, so
// it stays readable: no parameters, ids looked up by name.

/** The schemas the demo creates; `rulebook demo --drop` drops them. */
export const DEMO_SCHEMAS = ['demo_sales', 'demo_inventory'] as const;

/** The role whose members see the demo's alerts and notifications. */
export const DEMO_ROLE = 'demo warehouse';

/** Who wrote the demo's rules (created_by), and who reads their alerts on the staff page. */
export const DEMO_DBA = { email: 'dba@demo.example', name: 'Dana (demo DBA)' } as const;
export const DEMO_STAFF = { email: 'sam@demo.example', name: 'Sam (demo warehouse)' } as const;

/** The demo's rules by name, in the order the script writes them. */
export const DEMO_RULES = {
  allocate: 'Demo: allocate stock for a new order',
  bigOrder: 'Demo: tell the warehouse about a big order',
  lowStock: 'Demo: low stock',
  shipped: 'Demo: order shipped',
  summary: 'Demo: daily order summary',
} as const;

export const DEMO_SQL = `-- rulebook demo: a small shop. Orders come in, stock is allocated to them, the warehouse hears
-- about big orders, low stock and shipments, and gets a summary every morning.

create schema demo_sales;
create schema demo_inventory;

-- One row per product. The allocation rule adds to "allocated"; "available" and "needs_reorder"
-- follow by themselves, and the low-stock rule watches "needs_reorder" change to true.
create table demo_inventory.items (
  sku text primary key,
  name text not null,
  on_hand integer not null check (on_hand >= 0),
  reserved integer not null default 0,
  allocated integer not null default 0,
  reorder_level integer not null,
  received date not null default current_date,
  unit_cost numeric(10, 2) not null,
  available integer generated always as (on_hand - reserved - allocated) stored,
  needs_reorder boolean generated always as (on_hand - reserved - allocated <= reorder_level) stored
);

create table demo_sales.orders (
  id bigint generated always as identity primary key,
  order_number text not null unique,
  customer text not null,
  sku text not null references demo_inventory.items (sku),
  quantity integer not null check (quantity > 0),
  total numeric(10, 2) not null,
  status text not null default 'placed' check (status in ('placed', 'packed', 'shipped', 'cancelled')),
  placed_at timestamptz not null default now()
);

-- What the morning summary points to.
create view demo_sales.order_summary as
select status, count(*) as orders, sum(quantity) as units, sum(total) as total
  from demo_sales.orders
 group by status;

insert into demo_inventory.items (sku, name, on_hand, allocated, reorder_level, unit_cost) values
  ('LAMP-OAK', 'Oak desk lamp', 14, 2, 5, 38.00),
  ('CHAIR-GREY', 'Grey office chair', 40, 3, 10, 95.00),
  ('MUG-BLUE', 'Blue mug', 188, 0, 50, 2.40);

-- Sample orders placed before the rules existed: their stock is already counted in "allocated"
-- (or gone from "on_hand", once shipped).
insert into demo_sales.orders (order_number, customer, sku, quantity, total, status) values
  ('SO-1001', 'Acme Corp', 'LAMP-OAK', 2, 310.00, 'packed'),
  ('SO-1002', 'Initech', 'CHAIR-GREY', 3, 597.00, 'placed'),
  ('SO-1003', 'Umbrella Ltd', 'MUG-BLUE', 12, 57.60, 'shipped');

-- The people: a DBA who writes the rules, and Sam in the warehouse, who reads the alerts.
insert into core.roles (name) values ('${DEMO_ROLE}');
insert into core.users (email, name) values
  ('${DEMO_DBA.email}', '${DEMO_DBA.name}'),
  ('${DEMO_STAFF.email}', '${DEMO_STAFF.name}');
insert into core.user_roles (user_id, role_id)
select u.id, r.id from core.users u, core.roles r
 where u.email = '${DEMO_STAFF.email}' and r.name = '${DEMO_ROLE}';

-- Register the tables (this installs the capture triggers) and the view (scheduled rules only).
select workflow.register_entity('demo_inventory.items');
select workflow.register_entity('demo_sales.orders');
select workflow.register_entity('demo_sales.order_summary');

-- 1. A new order takes its stock, oldest delivery first; all or nothing.
with rule as (
  insert into workflow.automation_rules
    (name, entity_id, entity_type_id, trigger_type_id, trigger_conditions, created_by, updated_by)
  select '${DEMO_RULES.allocate}', e.id, e.entity_type_id, t.id, null, u.id, u.id
    from workflow.entities e, workflow.trigger_types t, core.users u
   where e.schema_name = 'demo_sales' and e.name = 'orders' and t.name = 'on_create'
     and u.email = '${DEMO_DBA.email}'
  returning id
)
insert into workflow.rule_actions (automation_rules_id, name, execution_order, action_config)
select rule.id, 'Allocate the ordered quantity', 1, '{
  "action_type": "allocate_inventory",
  "inventory": {
    "table": "demo_inventory.items",
    "columns": {"product": "sku", "on_hand": "on_hand", "reserved": "reserved",
                "allocated": "allocated", "received": "received", "unit_cost": "unit_cost"}
  },
  "request": {"product_field": "sku", "quantity_field": "quantity"},
  "strategy": "fifo",
  "mode": "allocate",
  "allow_partial": false
}'::jsonb
  from rule;

-- 2. A big order: an in-app notification for everyone in the warehouse role.
with rule as (
  insert into workflow.automation_rules
    (name, entity_id, entity_type_id, trigger_type_id, trigger_conditions, created_by, updated_by)
  select '${DEMO_RULES.bigOrder}', e.id, e.entity_type_id, t.id,
         '{"field_conditions": [{"field_name": "total", "operator": "greater_or_equal", "value": 1000}]}',
         u.id, u.id
    from workflow.entities e, workflow.trigger_types t, core.users u
   where e.schema_name = 'demo_sales' and e.name = 'orders' and t.name = 'on_create'
     and u.email = '${DEMO_DBA.email}'
  returning id
)
insert into workflow.rule_actions (automation_rules_id, name, execution_order, action_config)
select rule.id, 'Notify the warehouse in the app', 1, jsonb_build_object(
  'action_type', 'send_notification',
  'channels', jsonb_build_array('in_app'),
  'recipients', jsonb_build_object('roles', jsonb_build_array(r.id)),
  'priority', 'high',
  'title', 'Big order {{order_number}} from {{customer}}',
  'body', '{{quantity}} x {{sku}}, {{total}} EUR')
  from rule, core.roles r
 where r.name = '${DEMO_ROLE}';

-- 3. The chain: the allocation above updates demo_inventory.items; when that update makes
--    needs_reorder true, the warehouse gets an alert on the staff page.
with rule as (
  insert into workflow.automation_rules
    (name, entity_id, entity_type_id, trigger_type_id, trigger_conditions, created_by, updated_by)
  select '${DEMO_RULES.lowStock}', e.id, e.entity_type_id, t.id,
         '{"field_conditions": [{"field_name": "needs_reorder", "operator": "changed_to", "value": true}]}',
         u.id, u.id
    from workflow.entities e, workflow.trigger_types t, core.users u
   where e.schema_name = 'demo_inventory' and e.name = 'items' and t.name = 'on_update'
     and u.email = '${DEMO_DBA.email}'
  returning id
)
insert into workflow.rule_actions (automation_rules_id, name, execution_order, action_config)
select rule.id, 'Alert the warehouse', 1, jsonb_build_object(
  'action_type', 'create_alert',
  'alert_type', 'demo_low_stock',
  'severity', 'high',
  'title', 'Low stock: {{name}} ({{sku}})',
  'message', 'Only {{available}} left to sell; the reorder level is {{reorder_level}}.',
  'context', jsonb_build_object('sku', '{{sku}}', 'available', '{{available}}', 'on_hand', '{{on_hand}}'),
  'recipients', jsonb_build_object('roles', jsonb_build_array(r.id)),
  'resolve_prior', true)
  from rule, core.roles r
 where r.name = '${DEMO_ROLE}';

-- 4. An order ships: an alert for the warehouse role.
with rule as (
  insert into workflow.automation_rules
    (name, entity_id, entity_type_id, trigger_type_id, trigger_conditions, created_by, updated_by)
  select '${DEMO_RULES.shipped}', e.id, e.entity_type_id, t.id,
         '{"field_conditions": [{"field_name": "status", "operator": "changed_to", "value": "shipped"}]}',
         u.id, u.id
    from workflow.entities e, workflow.trigger_types t, core.users u
   where e.schema_name = 'demo_sales' and e.name = 'orders' and t.name = 'on_update'
     and u.email = '${DEMO_DBA.email}'
  returning id
)
insert into workflow.rule_actions (automation_rules_id, name, execution_order, action_config)
select rule.id, 'Alert the warehouse', 1, jsonb_build_object(
  'action_type', 'create_alert',
  'alert_type', 'demo_order_shipped',
  'severity', 'medium',
  'title', 'Order {{order_number}} shipped',
  'message', '{{customer}}: {{quantity}} x {{sku}} went from {{old.status}} to {{new.status}}.',
  'context', jsonb_build_object('order', '{{order_number}}', 'customer', '{{customer}}'),
  'recipients', jsonb_build_object('roles', jsonb_build_array(r.id)),
  'expires_in', '7 days')
  from rule, core.roles r
 where r.name = '${DEMO_ROLE}';

-- 5. Every morning at 07:00 UTC: an in-app note pointing to the summary view. Scheduled actions
--    see the tick, not rows, so the figures themselves are in the view.
with rule as (
  insert into workflow.automation_rules
    (name, entity_id, entity_type_id, trigger_type_id, trigger_conditions, created_by, updated_by)
  select '${DEMO_RULES.summary}', e.id, e.entity_type_id, t.id,
         '{"schedule": "0 7 * * *", "timezone": "UTC"}',
         u.id, u.id
    from workflow.entities e, workflow.trigger_types t, core.users u
   where e.schema_name = 'demo_sales' and e.name = 'order_summary' and t.name = 'scheduled'
     and u.email = '${DEMO_DBA.email}'
  returning id
)
insert into workflow.rule_actions (automation_rules_id, name, execution_order, action_config)
select rule.id, 'Morning note', 1, jsonb_build_object(
  'action_type', 'send_notification',
  'channels', jsonb_build_array('in_app'),
  'recipients', jsonb_build_object('roles', jsonb_build_array(r.id)),
  'priority', 'low',
  'title', 'Orders summary for {{formatDate scheduled_for "date"}}',
  'body', 'The figures: select * from demo_sales.order_summary;')
  from rule, core.roles r
 where r.name = '${DEMO_ROLE}';
`;

/** A statement to try once the demo is loaded, and what it should cause. */
export interface DemoStatement {
  readonly sql: string;
  readonly causes: string;
}

/** The statements `rulebook demo` prints; test/demo.test.ts runs these very strings. */
export const DEMO_STATEMENTS = {
  placeOrder: {
    sql: `insert into demo_sales.orders (order_number, customer, sku, quantity, total) values ('SO-1004', 'Globex', 'LAMP-OAK', 8, 1240.00)`,
    causes:
      'stock is allocated (LAMP-OAK: 12 available, 4 after), which raises a low-stock alert; ' +
      'the order is big, so the warehouse gets an in-app notification',
  },
  shipOrder: {
    sql: `update demo_sales.orders set status = 'shipped' where order_number = 'SO-1001'`,
    causes: 'an "Order SO-1001 shipped" alert for the warehouse role',
  },
  lookAtStock: {
    sql: `select sku, on_hand, allocated, available, needs_reorder from demo_inventory.items order by sku`,
    causes: 'shows the stock the allocation took',
  },
  lookAtRuns: {
    sql: `select r.name, x.status, x.executed_at from workflow.automation_executions x join workflow.automation_rules r on r.id = x.automation_rules_id order by x.executed_at`,
    causes: 'shows which rules ran, and how it went',
  },
} as const satisfies Record<string, DemoStatement>;
