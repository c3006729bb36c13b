import { addRole } from '../admin/users.js';
import type { Command } from './command.js';

export const roleAddCommand: Command = {
  name: 'role add',
  usage: '<name>',
  summary: 'add a role (core.roles)',
  options: {},
  positionals: { min: 1, max: 1 },
  async run({ positionals, output, withPool }) {
    const role = await withPool((pool) => addRole(pool, positionals[0]!));
    output.line(`rulebook: added role "${role.name}" (${role.id})`);
  },
};
