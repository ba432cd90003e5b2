/** CPU lists as systemd, /proc and sysfs write them: "0-2,5" lists, hex masks. */

/** "0-2,5" → [0, 1, 2, 5] */
export function parseCpuList(list: string): number[] {
  const cpus: number[] = [];
  for (const part of list.split(',').map((p) => p.trim()).filter(Boolean)) {
    const [a, b] = part.split('-').map(Number);
    if (a === undefined || Number.isNaN(a)) continue;
    for (let c = a; c <= (b ?? a); c++) cpus.push(c);
  }
  return cpus;
}

/** [3] → "8": the hex mask sysfs uses for rps_cpus. */
export function cpuMask(cpus: number[]): string {
  return cpus.reduce((mask, c) => mask | (1n << BigInt(c)), 0n).toString(16);
}

/** "00000000,00000008" → 8n */
export function parseMask(text: string): bigint {
  const hex = text.replace(/[,\s]/g, '');
  return hex ? BigInt(`0x${hex}`) : 0n;
}
