import { allocateInventory } from './allocate-inventory.js';
import { createAlert } from './create-alert.js';
import { sendEmail } from './send-email.js';
import { sendNotification } from './send-notification.js';
import type { ActionHandler } from './types.js';
import { updateField } from './update-field.js';
import { webhook } from './webhook.js';

/** The action types rulebook can run, by the name rules use in action_type. */
export class ActionRegistry {
  readonly #handlers = new Map<string, ActionHandler>();

  constructor(handlers: Iterable<ActionHandler> = []) {
    for (const handler of handlers) this.register(handler);
  }

  register(handler: ActionHandler): void {
    this.#handlers.set(handler.type, handler);
  }

  get(type: string): ActionHandler | undefined {
    return this.#handlers.get(type);
  }

  types(): string[] {
    return [...this.#handlers.keys()].sort();
  }
}

export function defaultActions(): ActionRegistry {
  return new ActionRegistry([
    createAlert,
    allocateInventory,
    updateField,
    sendEmail,
    sendNotification,
    webhook,
  ]);
}
