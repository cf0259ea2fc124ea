#!/usr/bin/env node
import { Command } from "commander";
import { VERSION } from "../config.js";
import { agentCommand } from "./agentCommands.js";
import { runsCommand, showCommand } from "./readCommands.js";
import { runCommand } from "./runCommand.js";
import { hubCommand, upCommand } from "./serveCommands.js";

const program = new Command("spanhub")
  .description("Self-hosted run tracing: an agent for Scout frames and JSON lines, a hub with an HTTP API.")
  .version(VERSION)
  .showHelpAfterError()
  .enablePositionalOptions();

program.addCommand(upCommand());
program.addCommand(agentCommand());
program.addCommand(hubCommand());
program.addCommand(runsCommand());
program.addCommand(showCommand());
program.addCommand(runCommand());

await program.parseAsync(process.argv).catch((error: Error) => {
  process.stderr.write(`spanhub: ${error.message}\n`);
  process.exitCode = 1;
});
