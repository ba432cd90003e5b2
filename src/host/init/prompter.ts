import { checkbox, confirm, input, select } from '@inquirer/prompts';
import type { Prompter } from './resolve.js';

/** The terminal prompts: @inquirer/prompts, nothing more. */
export function inquirerPrompter(out: NodeJS.WritableStream = process.stderr): Prompter {
  return {
    text: (o) => input({ message: o.message, default: o.default, validate: o.validate }),
    select: (o) => select({ message: o.message, choices: o.choices.map((c) => ({ name: c.name, value: c.value, description: c.description, disabled: c.disabled })), default: o.default }),
    confirm: (o) => confirm({ message: o.message, default: o.default }),
    checkbox: (o) =>
      checkbox({
        message: o.message,
        choices: o.choices.map((c) => ({ name: c.name, value: c.value, checked: c.checked, disabled: c.disabled })),
        validate: (items) => o.validate(items.map((i) => i.value)),
      }),
    note: (text) => out.write(`  ! ${text}\n`),
  };
}
