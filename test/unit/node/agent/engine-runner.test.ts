import { describe, expect, it, vi } from 'vitest';

vi.mock('../../../../src/node/engine-control.js', () => ({
  startEngineUnit: vi.fn(async () => ({ command: '/opt/pi-image/runtime/current/dllama-api --port 9990', kept: false })),
  stopEngineUnit: vi.fn(async () => undefined),
  engineInvocation: vi.fn(async () => 'run-2'),
  waitEngineReady: vi.fn(async () => 'ready'),
}));

const { EngineRunner, parseEngineExit } = await import('../../../../src/node/agent/engine-runner.js');

describe("the engine unit's exits, as its ExecStopPost writes them", () => {
  it('parses the four fields and refuses anything shorter', () => {
    expect(parseEngineExit('abc core-dump dumped SEGV\n')).toEqual({ invocation: 'abc', result: 'core-dump', code: 'dumped', status: 'SEGV' });
    expect(parseEngineExit('abc success\n')).toBeUndefined();
  });

  it("a crash of the run the agent started is news once; a stop, another run's exit or a restart by the agent is not", async () => {
    const runner = new EngineRunner([], () => undefined, () => undefined);
    const line = { command: 'dllama-api', args: [] };
    expect(runner.crashed({ invocation: 'run-2', result: 'signal', code: 'killed', status: 'SEGV' })).toBeUndefined();
    await runner.start(7, line, 'root', async () => true, 1000, false);
    expect(runner.crashed({ invocation: 'run-1', result: 'signal', code: 'killed', status: 'KILL' })).toBeUndefined();
    expect(runner.crashed({ invocation: 'run-2', result: 'success', code: 'killed', status: 'TERM' })).toBeUndefined();
    expect(runner.crashed({ invocation: 'run-2', result: 'core-dump', code: 'dumped', status: 'ABRT' })).toEqual({ generation: 7, what: 'dumped core on signal ABRT' });
    expect(runner.crashed({ invocation: 'run-2', result: 'core-dump', code: 'dumped', status: 'ABRT' })).toBeUndefined();
    await runner.start(8, line, 'root', async () => true, 1000, false);
    // An exit nobody asked for, even with status 0: nothing else would start it again.
    expect(runner.crashed({ invocation: 'run-2', result: 'success', code: 'exited', status: '0' })).toEqual({ generation: 8, what: 'exited with status 0' });
    await runner.start(9, line, 'root', async () => true, 1000, false);
    await runner.stop();
    expect(runner.crashed({ invocation: 'run-2', result: 'exit-code', code: 'exited', status: '1' })).toBeUndefined();
  });
});
