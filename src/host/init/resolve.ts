import { flagKey, flagName, QUESTIONS, type Choice, type InitAnswers, type InitContext, type Question } from './questions.js';

/**
 * How a question is put to a person. The real one is @inquirer/prompts (prompter.ts); tests
 * give a scripted one. `validate` returns true or the problem, and the prompt asks again.
 */
export interface Prompter {
  text(o: { message: string; default?: string; validate: (value: string) => Promise<true | string> }): Promise<string>;
  select(o: { message: string; choices: Choice[]; default?: unknown }): Promise<unknown>;
  confirm(o: { message: string; default?: boolean }): Promise<boolean>;
  checkbox(o: { message: string; choices: Choice[]; validate: (values: unknown[]) => Promise<true | string> }): Promise<unknown[]>;
  /** A line for the person (a problem with a flag's value before it is asked again). */
  note(text: string): void;
}

export interface Missing {
  flag: string;
  summary: string;
  /** What --yes would take, shown as text; undefined when there is no default. */
  default?: string;
}

export type Resolved = { ok: true; answers: InitAnswers } | { ok: false; problems: string[]; missing: Missing[] };

/** The answer under "other file…" in the SSH key list. */
export const OTHER_KEY = '\0other';

const shown = (value: unknown) => (Array.isArray(value) ? (value.length ? value.join(', ') : 'none') : String(value));

/**
 * Takes every answer from the flags; with `yes`, the defaults for the rest; with a prompter (a
 * terminal), asks for what is left and asks again for a flag's value that is wrong. Without a
 * prompter it never waits: it returns what is wrong and what is missing.
 */
export async function resolveAnswers(flags: Record<string, unknown>, opts: { yes: boolean; prompter?: Prompter; ctx: InitContext }): Promise<Resolved> {
  const { yes, prompter, ctx } = opts;
  const set: Record<string, unknown> = {};
  const a = set as Partial<InitAnswers>;
  const problems: string[] = [];
  const missing: Missing[] = [];
  const given = { ...flags };
  // An image given means the Raspberry Pi OS base.
  if (given.base === undefined && (given.baseImage !== undefined || given.baseSha256 !== undefined)) given.base = 'raspios';

  for (const q of QUESTIONS) {
    const raw = given[flagKey(q)];
    if (q.applies && !q.applies(a, ctx)) {
      if (raw !== undefined) problems.push(`${flagName(q)} does not fit the other answers: it is for ${notApplying(q)}`);
      continue;
    }
    if (raw !== undefined) {
      const parsed = await q.parse(raw, a, ctx);
      if ('value' in parsed) {
        set[q.id] = parsed.value;
        continue;
      }
      if (!prompter) {
        problems.push(`${flagName(q)}: ${parsed.problem}`);
        const dflt = q.default?.(a, ctx);
        if (dflt !== undefined) set[q.id] = await typed(q, dflt, a, ctx);
        continue;
      }
      prompter.note(`${flagName(q)}: ${parsed.problem}`);
    } else {
      const dflt = q.default?.(a, ctx);
      if (dflt !== undefined && (yes || (q.ask && !q.ask(a, ctx)))) {
        set[q.id] = await typed(q, dflt, a, ctx);
        continue;
      }
      if (!prompter) {
        missing.push({ flag: q.flag, summary: q.summary, default: dflt === undefined ? undefined : shown(dflt) });
        if (dflt !== undefined) set[q.id] = await typed(q, dflt, a, ctx);
        continue;
      }
    }
    set[q.id] = await ask(q, a, ctx, prompter as Prompter);
  }
  if (problems.length || missing.length) return { ok: false, problems, missing };
  return { ok: true, answers: set as unknown as InitAnswers };
}

/** A default as the answer it stands for (the size default is text, as typed). */
async function typed(q: Question, dflt: unknown, a: Partial<InitAnswers>, ctx: InitContext): Promise<unknown> {
  const parsed = await q.parse(dflt, a, ctx);
  return 'value' in parsed ? parsed.value : dflt;
}

function notApplying(q: Question): string {
  if (q.id === 'baseImage' || q.id === 'baseSha256') return '--base raspios';
  if (q.id === 'dllamaDir' || q.id === 'tokenizer') return '--engine dllama';
  if (q.id === 'firstAddress' || q.id === 'gateway' || q.id === 'dns') return '--network static';
  return 'another configuration';
}

async function ask(q: Question, a: Partial<InitAnswers>, ctx: InitContext, prompter: Prompter): Promise<unknown> {
  const message = q.message(a, ctx);
  const dflt = q.default?.(a, ctx);
  const validate = async (value: unknown): Promise<true | string> => {
    const parsed = await q.parse(value, a, ctx);
    return 'value' in parsed ? true : parsed.problem;
  };
  for (;;) {
    let value: unknown;
    if (q.kind === 'text') {
      value = await prompter.text({ message, default: dflt === undefined ? undefined : String(dflt), validate });
    } else if (q.kind === 'select') {
      value = await prompter.select({ message, choices: q.choices?.(a, ctx) ?? [], default: dflt });
    } else if (q.kind === 'confirm') {
      value = await prompter.confirm({ message, default: dflt === undefined ? undefined : Boolean(dflt) });
    } else {
      value = await askKeys(q, a, ctx, prompter, message, validate);
    }
    const parsed = await q.parse(value, a, ctx);
    if ('value' in parsed) return parsed.value;
    prompter.note(parsed.problem);
  }
}

/** SSH keys: a list of ~/.ssh/*.pub to tick, plus "another file"; a path to type when there is none. */
async function askKeys(q: Question, a: Partial<InitAnswers>, ctx: InitContext, prompter: Prompter, message: string, validate: (v: unknown) => Promise<true | string>): Promise<unknown> {
  const typeOne = async (what: string) => {
    const path = await prompter.text({ message: what, validate: async (s) => (s.trim() ? validate([s]) : true) });
    return path.trim() ? [path.trim()] : [];
  };
  const choices = q.choices?.(a, ctx) ?? [];
  if (!choices.length) return typeOne(`${message}\n  No ~/.ssh/*.pub found. Public key file (empty: none)`);
  const picked = await prompter.checkbox({
    message,
    choices: [...choices, { name: 'another file…', value: OTHER_KEY, checked: false }],
    validate: async (values) => validate(values.filter((v) => v !== OTHER_KEY)),
  });
  const keys = picked.filter((v) => v !== OTHER_KEY);
  if (picked.includes(OTHER_KEY)) keys.push(...(await typeOne('Public key file')));
  return keys;
}
