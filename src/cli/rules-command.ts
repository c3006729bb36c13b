import { listRules, showRule } from '../operations/rules.js';
import { validateRules } from '../operations/validate-rules.js';
import type { Command } from './command.js';
import { JSON_OPTION } from './common-options.js';
import { formatTime } from './output.js';

export const rulesListCommand: Command = {
  name: 'rules list',
  usage: '[--json]',
  summary: 'every rule: entity, trigger, active, number of actions, last run',
  options: { json: JSON_OPTION },
  async run({ output, withPool }) {
    const rules = await withPool((pool) => listRules(pool));
    if (output.json) return output.document(rules);
    if (rules.length === 0) return output.line('rulebook: no rules');
    output.table(
      ['ID', 'NAME', 'ENTITY', 'TRIGGER', 'ACTIVE', 'ACTIONS', 'LAST RUN', 'LAST STATUS'],
      rules.map((rule) => [
        rule.id,
        rule.name,
        rule.entity,
        rule.trigger,
        rule.active ? 'yes' : 'no',
        rule.actions,
        formatTime(rule.lastRunAt),
        rule.lastStatus,
      ]),
    );
  },
};

export const rulesShowCommand: Command = {
  name: 'rules show',
  usage: '<rule id | name> [--json]',
  summary: 'one rule: conditions, actions in order, dependencies, last runs',
  details: 'A name that several rules share is refused, with their ids.',
  options: { json: JSON_OPTION },
  positionals: { min: 1, max: 1 },
  async run({ positionals, output, withPool }) {
    const rule = await withPool((pool) => showRule(pool, positionals[0]!));
    if (output.json) return output.document(rule);
    output.line(`rule         ${rule.name} (${rule.id})${rule.active ? '' : ', inactive'}`);
    if (rule.description) output.line(`description  ${rule.description}`);
    output.line(`entity       ${rule.entity}`);
    output.line(`trigger      ${rule.trigger}`);
    output.line(`conditions   ${rule.conditions === null ? 'none' : JSON.stringify(rule.conditions)}`);
    output.line(`runs after   ${rule.dependsOn.map((r) => `${r.name} (${r.id})`).join(', ') || '-'}`);
    output.line(`runs before  ${rule.dependents.map((r) => `${r.name} (${r.id})`).join(', ') || '-'}`);
    output.line();
    if (rule.actions.length === 0) output.line('no actions');
    else {
      output.table(
        ['ORDER', 'ACTION', 'TYPE', 'ACTIVE', 'TEMPLATE', 'ID'],
        rule.actions.map((a) => [a.order, a.name, a.type, a.active ? 'yes' : 'no', a.template, a.id]),
      );
    }
    output.line();
    if (rule.lastRuns.length === 0) output.line('no runs yet');
    else {
      output.table(
        ['RAN', 'STATUS', 'MS', 'EXECUTION', 'ERROR'],
        rule.lastRuns.map((run) => [
          formatTime(run.executedAt),
          run.status,
          run.executionTimeMs,
          run.id,
          run.errorMessage?.split('\n')[0],
        ]),
      );
    }
  },
};

export const rulesValidateCommand: Command = {
  name: 'rules validate',
  usage: '[--json]',
  summary: `re-check every rule and action against today's tables, columns, people and
templates (after ALTER TABLE); exit 1 when something would fail`,
  details: `Runs the checks each rule and action passed when it was written, and those of the views rules
watch, read-only, and prints one problem per line naming the rule and the action. Also reports
actions whose action_type no daemon has recorded (a misspelt type). Nothing is changed.`,
  options: { json: JSON_OPTION },
  async run({ output, withPool }) {
    const problems = await withPool((pool) => validateRules(pool));
    if (output.json) output.document(problems);
    else if (problems.length === 0) output.line('rulebook: every rule and action passes its checks');
    else for (const problem of problems) output.line(problem.problem);
    if (problems.length > 0) {
      if (!output.json) output.warn(`${problems.length} problem${problems.length === 1 ? '' : 's'} found`);
      return 1;
    }
  },
};
