/** Command-line parsing on node:util parseArgs, with errors a user can act on. */
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { UsageError } from '../errors';

export type OptionSpec = NonNullable<ParseArgsConfig['options']>;

export interface Parsed<V> {
  values: V;
  positionals: string[];
}

export function parseCommandArgs<V>(args: string[], options: OptionSpec): Parsed<V> & { help: boolean } {
  try {
    const { values, positionals } = parseArgs({
      args,
      options: { ...options, help: { type: 'boolean', short: 'h' } },
      allowPositionals: true,
      strict: true,
    });
    const { help, ...rest } = values as Record<string, unknown>;
    return { values: rest as V, positionals, help: help === true };
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (typeof code === 'string' && code.startsWith('ERR_PARSE_ARGS')) {
      throw new UsageError((err as Error).message.replace(/\. To specify a positional argument.*$/s, '').split('\n')[0]);
    }
    throw err;
  }
}

export function expectPositionals(positionals: string[], names: string[], optional = 0): void {
  const min = names.length - optional;
  if (positionals.length < min) throw new UsageError(`missing ${names.slice(positionals.length).join(' and ')}`);
  if (positionals.length > names.length) throw new UsageError(`unexpected argument '${positionals[names.length]}'`);
}
