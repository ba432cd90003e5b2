/** Tuning levers as data; no I/O here, so the on-device agent can bundle it. */
export interface LeverApply {
  sysctl?: Record<string, string | number>;
  modules?: string[];
  governor?: string;
  nic?: {
    gro?: 'on' | 'off';
    rx_ring?: string | number;
    irq_cpus?: string;
    rps_cpus?: string;
    rps_flow_entries?: string | number;
    napi_defer_hard_irqs?: string | number;
    gro_flush_timeout?: string | number;
  };
  engine?: { CPUAffinity?: string; LimitMEMLOCK?: string; Nice?: string | number; Environment?: Record<string, string> };
  eeprom?: Record<string, string | number>;
  mask_timers?: { keep?: string[] };
  forbid_config_txt?: string[];
}

export interface LeverDefinition {
  id: string;
  purpose: string;
  effect: string;
  boards: string[];
  value?: string | number;
  value_pattern?: string;
  /** A numeric value's smallest and largest allowed value. */
  value_range?: [number, number];
  apply: LeverApply;
}

export interface TuningProfile {
  name: string;
  description: string;
  levers: LeverDefinition[];
}

/** A lever as this build uses it: on or off, on this board or not, with its final value. */
export interface ResolvedLever {
  id: string;
  purpose: string;
  effect: string;
  boards: string[];
  /** Off when the user switched it off in pi-image.yaml. */
  enabled: boolean;
  /** Whether the board is one the lever is for. */
  onBoard: boolean;
  value?: string;
  apply: LeverApply;
}

/** Levers that shape this image: on, and meant for this board. */
export const activeLevers = (levers: readonly ResolvedLever[]) => levers.filter((l) => l.enabled && l.onBoard);

/** What the node checks itself against: written into the image (TUNING_STATE_PATH), read by `pi-node doctor`. */
export interface TuningState {
  profile: string;
  board: string;
  levers: ResolvedLever[];
  masked_timers: string[];
}
