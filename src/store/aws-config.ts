/**
 * The shared AWS config file (~/.aws/config, or AWS_CONFIG_FILE), read as the AWS CLI reads it
 * for the settings the SDK for JavaScript leaves to us: `ca_bundle` and `region` of a profile.
 */
import { readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';

export type ProfileSettings = Record<string, string>;

/** The profiles of an INI text: `[default]`, `[profile NAME]` (and `[NAME]`) with `key = value` lines. */
export function parseAwsConfig(text: string): Map<string, ProfileSettings> {
  const profiles = new Map<string, ProfileSettings>();
  let current: ProfileSettings | undefined;
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.trim();
    if (!line || line.startsWith('#') || line.startsWith(';')) continue;
    const section = /^\[\s*(?:profile\s+)?([^\]]+?)\s*\]$/.exec(line);
    if (section) {
      const name = section[1];
      current = profiles.get(name) ?? {};
      profiles.set(name, current);
      continue;
    }
    const setting = /^([A-Za-z0-9_.-]+)\s*=\s*(.*)$/.exec(line);
    // Indented lines belong to a nested block (s3 = ...); only top-level settings are wanted.
    if (setting && current && raw === raw.trimStart()) current[setting[1].toLowerCase()] = setting[2].trim();
  }
  return profiles;
}

export function awsConfigPath(env: NodeJS.ProcessEnv): string {
  return env.AWS_CONFIG_FILE || join(env.HOME || homedir(), '.aws', 'config');
}

/** The profile the SDK will use: the given one, AWS_PROFILE, else `default`. */
export function profileName(given: string | undefined, env: NodeJS.ProcessEnv): string {
  return given || env.AWS_PROFILE || 'default';
}

/** Settings of a profile; empty when the config file or the profile does not exist. */
export function profileSettings(name: string, env: NodeJS.ProcessEnv): ProfileSettings {
  let text: string;
  try {
    text = readFileSync(awsConfigPath(env), 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return {};
    throw err;
  }
  return parseAwsConfig(text).get(name) ?? {};
}
