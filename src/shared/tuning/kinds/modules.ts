import { generatedHeader, presence, type Check, type LeverKind } from '../kind.js';

const MODULES_CONF = 'etc/modules-load.d/pi-image-tuning.conf';

/** Kernel modules: a modules-load.d file, loaded by systemd-modules-load at boot. */
export const modules: LeverKind<'modules'> = {
  key: 'modules',
  describe: (names) => `modules-load ${names.join(', ')}`,
  render(uses, { profile }) {
    const names = uses.flatMap(({ value }) => value);
    return names.length ? [{ path: MODULES_CONF, content: `${generatedHeader(profile)}\n${names.join('\n')}\n` }] : [];
  },
  async check(names, { sys }) {
    const checks: Check[] = [];
    for (const name of names) checks.push(presence(`module ${name}`, 'loaded', 'not loaded', (await sys.listDir(`/sys/module/${name}`)).length > 0));
    return checks;
  },
};
