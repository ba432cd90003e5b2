import { EEPROM_SIZE, MAGIC } from '../../src/host/firmware/eeprom.js';

export const FACTORY_CONFIG = '[all]\nBOOT_UART=1\nPOWER_OFF_ON_HALT=0\nBOOT_ORDER=0xf461\n';

/** An image laid out per the published format: bootcode, padding, bootconf.txt, padding, a firmware blob, erased flash. */
export function synthesizeEeprom(config = FACTORY_CONFIG, configAt = 0x1000): Buffer {
  const img = Buffer.alloc(EEPROM_SIZE, 0xff);
  const section = (offset: number, magic: number, body: Buffer) => {
    img.writeUInt32BE(magic, offset);
    img.writeUInt32BE(body.length, offset + 4);
    body.copy(img, offset + 8);
    return Math.ceil((offset + 8 + body.length) / 8) * 8;
  };
  const padTo = (offset: number, target: number) => {
    if (offset < target) section(offset, MAGIC.padding, Buffer.alloc(target - offset - 8, 0xff));
  };
  const bootcode = Buffer.alloc(3001);
  for (let i = 0; i < bootcode.length; i++) bootcode[i] = (i * 7) & 0xff;
  let end = section(0, MAGIC.bootcode, bootcode);
  padTo(end, configAt);
  const name = Buffer.alloc(16, 0);
  name.write('bootconf.txt', 'latin1');
  end = section(configAt, MAGIC.file, Buffer.concat([name, Buffer.from(config)]));
  padTo(end, configAt + 0x1000);
  section(configAt + 0x1000, 0x55aaf33f, Buffer.alloc(500, 0x42));
  return img;
}

