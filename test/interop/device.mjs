// One device session with Microsoft's Azure IoT device SDK against a
// Shopfloor hub; run by interop_test.go. It exits 0 when every step
// worked, else prints the failed step and exits 1.
//
// Environment:
//   SF_CONNECTION_STRING  device connection string (HostName=localhost;…)
//   SF_TRANSPORT          mqtt or mqttws
//   SF_URI                where the transport connects (mqtts://localhost:PORT
//                         or wss://localhost:PORT/$iothub/websocket): the SDK
//                         has fixed ports (8883, 443), so the test overrides them
//   SF_CERT, SF_KEY       PEM files of an X.509 device (optional)
//   SF_API, SF_TOKEN      the hub's REST API and an operator token
//   SF_DEVICE             the device id
//   NODE_EXTRA_CA_CERTS   the hub's CA
import { readFileSync } from 'node:fs';
import deviceSDK from 'azure-iot-device';
import mqttSDK from 'azure-iot-device-mqtt';

const { Client, Message } = deviceSDK;
const { Mqtt, MqttWs } = mqttSDK;

const env = (k) => {
  const v = process.env[k];
  if (!v) throw new Error(`${k} is not set`);
  return v;
};
const uri = env('SF_URI');
const api = env('SF_API');
const token = env('SF_TOKEN');
const device = env('SF_DEVICE');

// Same transports, pointed at the test's port instead of 8883/443.
class TestMqtt extends Mqtt {
  _getBaseTransportConfig(credentials) {
    return { ...super._getBaseTransportConfig(credentials), uri };
  }
}
class TestMqttWs extends MqttWs {
  _getBaseTransportConfig(credentials) {
    return { ...super._getBaseTransportConfig(credentials), uri };
  }
}
const Transport = env('SF_TRANSPORT') === 'mqttws' ? TestMqttWs : TestMqtt;

const rest = async (method, path, body) => {
  const res = await fetch(api + path, {
    method,
    headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
    body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
  });
  const text = await res.text();
  if (res.status >= 300) throw new Error(`${method} ${path}: ${res.status} ${text}`);
  return text ? JSON.parse(text) : null;
};

const withTimeout = (p, what, ms = 15000) =>
  Promise.race([p, new Promise((_, rej) => setTimeout(() => rej(new Error(`timed out: ${what}`)), ms))]);

const step = async (name, f) => {
  try {
    const r = await withTimeout(f(), name);
    console.log(`ok   ${name}`);
    return r;
  } catch (e) {
    console.error(`FAIL ${name}: ${e && e.stack ? e.stack : e}`);
    process.exit(1);
  }
};

const client = Client.fromConnectionString(env('SF_CONNECTION_STRING'), Transport);
if (process.env.SF_CERT) {
  client.setOptions({ cert: readFileSync(process.env.SF_CERT, 'utf8'), key: readFileSync(process.env.SF_KEY, 'utf8') });
}

await step('open', () => client.open());

await step('telemetry', () => {
  const m = new Message(JSON.stringify({ temperature: 21.5, state: 'running' }));
  m.properties.add('line', '3');
  return client.sendEvent(m);
});

const twin = await step('getTwin', () => client.getTwin());
if (twin.properties.desired.$version !== 1) {
  console.error('FAIL desired $version of a fresh twin:', JSON.stringify(twin.properties.desired));
  process.exit(1);
}

await step('reported patch', () =>
  new Promise((res, rej) => twin.properties.reported.update({ firmware: '2.4.1', rpm: 1200 }, (e) => (e ? rej(e) : res()))));

await step('reported patch visible in the API', async () => {
  const t = await rest('GET', `/api/v1/devices/${encodeURIComponent(device)}/twin`);
  if (t.properties.reported.firmware !== '2.4.1' || t.properties.reported.$version !== 2) {
    throw new Error('reported: ' + JSON.stringify(t.properties.reported));
  }
});

await step('desired update reaches properties.desired', () =>
  new Promise((res, rej) => {
    let done = false;
    let timer;
    twin.on('properties.desired', (delta) => {
      if (delta.setpoint === 72.5 && !done) {
        done = true;
        clearInterval(timer);
        if (twin.properties.desired.setpoint !== 72.5) rej(new Error('twin.properties.desired not merged'));
        else res();
      }
    });
    // Adding the listener makes the SDK subscribe in the background, with
    // no signal when that is done; a patch the hub sends before it has the
    // subscription is not delivered (as with IoT Hub). So patch again until
    // one arrives.
    let attempt = 0;
    const send = () =>
      rest('PATCH', `/api/v1/devices/${encodeURIComponent(device)}/twin`, { properties: { desired: { setpoint: 72.5, attempt: ++attempt } } }).catch(rej);
    send();
    timer = setInterval(() => { if (!done) send(); }, 500);
  }));

client.onDeviceMethod('reboot', (req, res) => {
  res.send(200, { rebooting: true, delay: req.payload.delay }, (e) => e && console.error('method response:', e));
});
await step('direct method via REST', async () => {
  // onDeviceMethod subscribes in the background; until its SUBACK the hub
  // answers 404 (as IoT Hub does), so a caller retries.
  for (let i = 0; i < 50; i++) {
    try {
      await rest('POST', `/api/v1/devices/${encodeURIComponent(device)}/methods/ping?timeout=1`, null);
    } catch (e) {
      if (String(e).includes('device_offline')) { await new Promise((r) => setTimeout(r, 100)); continue; }
    }
    break;
  }
  const r = await rest('POST', `/api/v1/devices/${encodeURIComponent(device)}/methods/reboot?timeout=10`, { delay: 5 });
  if (r.status !== 200 || r.payload.rebooting !== true || r.payload.delay !== 5) throw new Error(JSON.stringify(r));
});

await step('cloud-to-device message received and completed', () =>
  new Promise((res, rej) => {
    client.on('message', (msg) => {
      const body = msg.data.toString();
      const prio = msg.properties.getValue('priority');
      client.complete(msg, (e) => {
        if (e) return rej(e);
        if (body !== 'stop now' || prio !== 'high' || !msg.messageId) {
          return rej(new Error(`message ${body} ${JSON.stringify(msg.properties)} id ${msg.messageId}`));
        }
        res();
      });
    });
    rest('POST', `/api/v1/devices/${encodeURIComponent(device)}/messages?priority=high`, 'stop now').catch(rej);
  }));

await step('close', () => client.close());
process.exit(0);
