// PM2 process file for bisnesgpt — the original four apps, running the Python entry points
// (`python -m bisnesgpt run <role>`) with this project's .venv interpreter.
//
//   bisnesgpt migrate
//   pm2 start ecosystem.config.js --only bisnesgpt-api,bisnesgpt-wwebjs,bisnesgpt-meta
//   pm2 start ecosystem.config.js --only whatsapp-service-legacy      # the rollback target
//
// PM2's "cluster" mode works only for Node.js scripts. The api and meta roles therefore run
// as N *fork* instances that share one port through SO_REUSEPORT (the kernel spreads
// connections over them) — the same effect for a Python process. PM2 numbers the
// instances through INSTANCE_ID (instance_var), so they report as api, api-1, …
//
// Settings come from the environment of `pm2 start`, else from .env in this directory
// (real environment wins, like the Python settings), else the defaults below.

const fs = require('fs');
const path = require('path');

const root = __dirname;

function readDotEnv(file) {
  const values = {};
  let text;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    return values;
  }
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.trim();
    if (!line || line.startsWith('#') || !line.includes('=')) continue;
    const at = line.indexOf('=');
    const key = line.slice(0, at).trim().replace(/^export\s+/, '');
    let value = line.slice(at + 1).trim();
    if (/^(['"]).*\1$/.test(value)) {
      value = value.slice(1, -1);
    } else {
      value = value.replace(/\s+#.*$/, ''); // inline comment, as in .env.example
    }
    values[key] = value;
  }
  return values;
}

const dotenv = readDotEnv(path.join(root, '.env'));
const setting = (name, fallback) => process.env[name] ?? dotenv[name] ?? fallback;

const python = setting('BISNESGPT_PYTHON', path.join(root, '.venv', 'bin', 'python'));
const logDir = path.resolve(root, setting('LOG_DIR', 'logs'));
const apiInstances = Math.max(1, parseInt(setting('API_INSTANCES', '1'), 10) || 1);
const metaInstances = Math.max(1, parseInt(setting('META_INSTANCES', '1'), 10) || 1);
// PM2 sends SIGINT, then SIGKILL after kill_timeout: leave the drain its SHUTDOWN_TIMEOUT.
const drainMs = Math.round((parseFloat(setting('SHUTDOWN_TIMEOUT', '10')) || 10) * 1000) + 2000;

function role(name, processName, options) {
  const { env, ...rest } = options;
  return {
    name,
    script: python,
    args: ['-m', 'bisnesgpt', 'run', processName],
    interpreter: 'none',
    cwd: root,
    exec_mode: 'fork',
    instance_var: 'INSTANCE_ID',
    env: {
      PROCESS_NAME: processName,
      // Every process must agree on how many instances exist (/health/all expects them all).
      API_INSTANCES: String(apiInstances),
      META_INSTANCES: String(metaInstances),
      PYTHONUNBUFFERED: '1',
      ...env,
    },
    error_file: path.join(logDir, `${processName}-error.log`),
    out_file: path.join(logDir, `${processName}-out.log`),
    log_date_format: 'YYYY-MM-DD HH:mm:ss Z',
    merge_logs: true,
    watch: false,
    ...rest,
  };
}

module.exports = {
  apps: [
    // LEGACY: every role in one process on PORT (8443) — start it only to roll back. The API
    // moves from API_PORT to PORT with it, unless LEGACY_SERVE_API_PORT=true: then legacy
    // listens on API_PORT too (stop the api apps first, as a rollback does).
    role('whatsapp-service-legacy', 'legacy', {
      instances: 1,
      env: { PORT: setting('PORT', '8443'), LEGACY_SERVE_API_PORT: setting('LEGACY_SERVE_API_PORT', 'false') },
      kill_timeout: 15000,
      max_restarts: 0,
      autorestart: false,
      min_uptime: '0s',
      restart_delay: 0,
    }),

    // API: public HTTP API on API_PORT (3000), API_INSTANCES copies sharing the port.
    role('bisnesgpt-api', 'api', {
      instances: apiInstances,
      max_memory_restart: setting('API_MAX_MEMORY', '2G'),
      min_uptime: '10s',
      max_restarts: 10,
      restart_delay: 2000,
      autorestart: true,
      kill_timeout: drainMs,
    }),

    // WhatsApp Web sessions on WWEBJS_PORT (3001): exactly one.
    role('bisnesgpt-wwebjs', 'wwebjs', {
      instances: 1,
      max_memory_restart: setting('WWEBJS_MAX_MEMORY', '4G'),
      min_uptime: '30s',
      max_restarts: 10,
      restart_delay: 5000,
      autorestart: true,
      kill_timeout: 10000,
    }),

    // Meta Cloud API / 360dialog on META_PORT (3002), META_INSTANCES copies sharing the port.
    role('bisnesgpt-meta', 'meta', {
      instances: metaInstances,
      max_memory_restart: setting('META_MAX_MEMORY', '1G'),
      min_uptime: '10s',
      max_restarts: 20,
      restart_delay: 1000,
      autorestart: true,
      kill_timeout: drainMs,
    }),
  ],
};
