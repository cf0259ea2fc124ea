import { resolve } from "node:path";
import { Command, InvalidArgumentError, Option } from "commander";
import { traceRun } from "../runner/traceRun.js";
import { parseDuration, socketOption } from "./options.js";

interface RunFlags {
  name?: string;
  tag?: Record<string, string>;
  timeout?: number;
  grace: number;
  cwd?: string;
  cleanEnv?: boolean;
  socket: string;
}

export function runCommand(): Command {
  return (
    new Command("run")
      .description("run a command as a traced run: its spans arrive on a per-run socket (SPANHUB_RUN_SOCKET)")
      .usage("[options] -- <command> [args...]")
      .argument("<command...>", "the command and its arguments")
      .option("--name <name>", "the run's name (default: the command line)")
      .option("--tag <key=value>", "a run tag (repeatable)", collectTag)
      .addOption(
        new Option("--timeout <duration>", "stop the command after this long (exit 124)").argParser(parseDuration),
      )
      .addOption(
        new Option("--grace <duration>", "between SIGTERM and SIGKILL when stopping the command")
          .default(5000, "5s")
          .argParser(parseDuration),
      )
      .option("--cwd <dir>", "the command's working directory")
      .option("--clean-env", "pass only PATH, HOME, LANG, LC_*, PYTHONPATH and SPANHUB_* to the command")
      .addOption(socketOption())
      // Everything after the command belongs to it, not to us.
      .passThroughOptions()
      .action(async (command: string[], flags: RunFlags) => {
        process.exitCode = await traceRun({
          command,
          ...(flags.name !== undefined ? { name: flags.name } : {}),
          tags: flags.tag ?? {},
          ...(flags.timeout !== undefined ? { timeoutMs: flags.timeout } : {}),
          graceMs: flags.grace,
          cwd: resolve(flags.cwd ?? "."),
          cleanEnv: Boolean(flags.cleanEnv),
          agentSocket: resolve(flags.socket),
          env: process.env,
        });
      })
  );
}

function collectTag(text: string, tags: Record<string, string> = {}): Record<string, string> {
  const at = text.indexOf("=");
  if (at <= 0) throw new InvalidArgumentError("write a tag as key=value");
  return { ...tags, [text.slice(0, at)]: text.slice(at + 1) };
}
