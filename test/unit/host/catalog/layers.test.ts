import { mkdirSync, mkdtempSync, realpathSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadBoard } from '../../../../src/host/catalog/boards.js';
import { listBuiltInLayers, loadBuiltInLayer, loadLayer, orderLayers } from '../../../../src/host/catalog/layers.js';
import { LAYERS_DIR, PACKAGE_ROOT } from '../../../../src/host/paths.js';
import { REPO } from '../../../helpers/cli.js';

const FIXTURE_LAYER = join(REPO, 'test/fixtures/layers/serial-console');

describe('layers', () => {
  it('are folders: the built-in ones under image/layers/, each with layer.yaml', async () => {
    expect(await listBuiltInLayers()).toEqual(['cluster', 'engine', 'engine-llama-cpp', 'growroot', 'pi-node', 'ssh-hostkeys', 'system', 'tuning']);
  });

  it('loads a built-in layer and a user layer with the same loader', async () => {
    const growroot = await loadBuiltInLayer('growroot');
    expect(growroot).toMatchObject({ name: 'growroot', origin: 'growroot', files: { 'usr/lib/pi-image/growroot': { mode: '0755' } } });
    expect(growroot.overlay.map((f) => [f.path, f.source, f.template])).toEqual([
      ['usr/lib/pi-image/growroot', join(LAYERS_DIR, 'growroot/overlay/usr/lib/pi-image/growroot'), false],
      ['usr/lib/systemd/system/pi-image-growroot.service', join(LAYERS_DIR, 'growroot/overlay/usr/lib/systemd/system/pi-image-growroot.service'), false],
    ]);

    const user = await loadLayer(FIXTURE_LAYER);
    expect(user.origin).toBe(FIXTURE_LAYER);
    expect(user.overlay.map((f) => [f.path, f.template])).toEqual([
      ['etc/systemd/system/serial-getty@ttyAMA0.service.d/autologin.conf', false],
      ['usr/local/bin/pi-image-test-http', false],
      ['usr/local/bin/pi-image-test-marker', true],
    ]);
    // sha256sum of the file
    expect(user.overlay[0]?.sha256).toBe('b2876d6547252db3bf6ff8a35eee8b32c316bed3380ec8817d0da5b7d2476518');
  });

  it('names the built-in layers when one is unknown, and a missing layer folder', async () => {
    await expect(loadBuiltInLayer('nope')).rejects.toThrow(/unknown layer "nope"; built-in layers: cluster, engine, engine-llama-cpp, growroot, pi-node, ssh-hostkeys, system, tuning/);
    await expect(loadLayer('/nonexistent/layer')).rejects.toThrow(/layer directory \/nonexistent\/layer does not exist/);
  });

  it('refuses an overlay with both a file and its template', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'pi-image-layer-'));
    mkdirSync(join(dir, 'overlay/etc'), { recursive: true });
    writeFileSync(join(dir, 'layer.yaml'), 'name: twice\ndescription: x\n');
    writeFileSync(join(dir, 'overlay/etc/motd'), 'a');
    writeFileSync(join(dir, 'overlay/etc/motd.hbs'), 'b');
    await expect(loadLayer(dir)).rejects.toThrow(/layer twice: overlay has both etc\/motd and etc\/motd.hbs/);
  });

  it('refuses a base_enable entry that is not a unit name (it would run in a shell as root), naming the file, key and value', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'pi-image-layer-'));
    writeFileSync(join(dir, 'layer.yaml'), 'name: evil\ndescription: x\nbase_enable: ["ssh.service; touch /tmp/PWNED #"]\n');
    const error = await loadLayer(dir).catch((e: Error) => e);
    expect(error).toBeInstanceOf(Error);
    expect((error as Error).message).toContain(join(dir, 'layer.yaml'));
    expect((error as Error).message).toMatch(/key "base_enable\[0\]": value "ssh.service; touch \/tmp\/PWNED #" does not match \^\[A-Za-z0-9@._-\]\+/);
  });

  it('keeps build_files (and overlay/) inside the layer folder: no .., no absolute path, no symlink out of it', async () => {
    const outside = mkdtempSync(join(tmpdir(), 'pi-image-host-'));
    const hostFile = join(outside, 'id_ed25519');
    writeFileSync(hostFile, 'PRIVATE KEY');
    const layerWith = (from: string, setup?: (dir: string) => void) => {
      const dir = mkdtempSync(join(tmpdir(), 'pi-image-layer-'));
      writeFileSync(join(dir, 'layer.yaml'), `name: grabby\ndescription: x\nbuild_files:\n  usr/share/grabbed: { from: "${from}" }\n`);
      setup?.(dir);
      return dir;
    };
    // Relative to the package (as `from` used to be) this reached the host file.
    const climbing = relative(PACKAGE_ROOT, hostFile);
    await expect(loadLayer(layerWith(climbing))).rejects.toThrow(
      new RegExp(`layer grabby: build_files "usr/share/grabbed": from "${climbing}" is outside the layer folder`),
    );
    await expect(loadLayer(layerWith(hostFile))).rejects.toThrow(/build_files "usr\/share\/grabbed": from ".*id_ed25519" is outside the layer folder/);
    const linked = layerWith('files/key', (dir) => {
      mkdirSync(join(dir, 'files'));
      symlinkSync(hostFile, join(dir, 'files/key'));
    });
    await expect(loadLayer(linked)).rejects.toThrow(/build_files "usr\/share\/grabbed": from "files\/key" leads through a symlink to .*id_ed25519, outside the layer folder/);

    const linkedOverlay = mkdtempSync(join(tmpdir(), 'pi-image-layer-'));
    writeFileSync(join(linkedOverlay, 'layer.yaml'), 'name: linked\ndescription: x\n');
    symlinkSync(outside, join(linkedOverlay, 'overlay'));
    await expect(loadLayer(linkedOverlay)).rejects.toThrow(/layer linked: overlay\/ leads through a symlink to .*pi-image-host-\w+, outside the layer folder/);

    const inside = layerWith('files/tool', (dir) => {
      mkdirSync(join(dir, 'files'));
      writeFileSync(join(dir, 'files/tool'), 'TOOL');
    });
    expect((await loadLayer(inside)).overlay).toEqual([expect.objectContaining({ path: 'usr/share/grabbed', source: join(realpathSync(inside), 'files/tool') })]);
  });

  it("resolve, for the qemu board, to these files of the image (path, layer, mode)", async () => {
    const board = await loadBoard('qemu');
    // The engine's layer comes with the board's default engine (llama.cpp), not from the board's list.
    const layers = orderLayers(await Promise.all([...board.layers, 'engine-llama-cpp'].map((name) => loadBuiltInLayer(name))));
    expect(layers.map((l) => l.name)).toEqual(['system', 'growroot', 'ssh-hostkeys', 'pi-node', 'tuning', 'engine', 'cluster', 'engine-llama-cpp']);
    const files = layers.flatMap((l) => l.overlay.map((f) => [f.path, l.name, l.files[f.path]?.mode ?? '0644']));
    expect(files.sort(([a], [b]) => (a as string).localeCompare(b as string))).toEqual([
      ['etc/fstab', 'system', '0644'],
      ['etc/hostname', 'system', '0644'],
      ['etc/hosts', 'system', '0644'],
      ['etc/machine-id', 'system', '0644'],
      ['etc/pi-image/image.json', 'system', '0644'],
      ['etc/ssh/sshd_config.d/10-pi-image.conf', 'ssh-hostkeys', '0644'],
      ['etc/sysctl.d/60-pi-image-cluster.conf', 'cluster', '0644'],
      ['usr/bin/pi-node', 'pi-node', '0755'],
      ['usr/lib/pi-image/growroot', 'growroot', '0755'],
      ['usr/lib/systemd/network/20-wired.network', 'system', '0644'],
      ['usr/lib/systemd/system-preset/00-pi-image.preset', 'system', '0644'],
      ['usr/lib/systemd/system/pi-image-agent.service', 'cluster', '0644'],
      ['usr/lib/systemd/system/pi-image-cpu-tuning.service', 'tuning', '0644'],
      ['usr/lib/systemd/system/pi-image-engine.service', 'engine', '0644'],
      ['usr/lib/systemd/system/pi-image-first-boot.service', 'cluster', '0644'],
      ['usr/lib/systemd/system/pi-image-growroot.service', 'growroot', '0644'],
      ['usr/lib/systemd/system/pi-image-nic-tuning.service', 'tuning', '0644'],
      ['usr/lib/systemd/system/pi-image-ssh-keygen.service', 'ssh-hostkeys', '0644'],
    ]);
  });

  it('need the engine layer wherever the cluster agent runs: every board lists it', async () => {
    for (const name of ['pi4', 'pi5', 'qemu']) {
      const board = await loadBoard(name);
      expect(orderLayers(await Promise.all(board.layers.map((l) => loadBuiltInLayer(l)))).map((l) => l.name)).toContain('engine');
    }
  });
});
