//! `chronik-ctl` entry point: parse, dispatch, print. Exit status 0 on success, 1 on any error
//! (printed to stderr), 2 on a usage error (clap's convention).

use std::io::{BufWriter, Write};
use std::time::Duration;

use anyhow::Context;
use chronik_ctl::cli::{Cli, ClusterCmd, Command, GroupCmd, TopicCmd};
use chronik_ctl::client::Client;
use chronik_ctl::data::{self, ConsumeOptions};
use chronik_ctl::output::{render, Render};
use chronik_ctl::{cluster, group, topic};
use clap::Parser;

fn print<R: Render>(report: &R, cli: &Cli) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(render(report, cli.output).as_bytes())
        .context("write to stdout")?;
    out.flush().context("flush stdout")
}

fn run(cli: &Cli) -> anyhow::Result<()> {
    let mut client = Client::new(&cli.bootstrap, Duration::from_millis(cli.timeout_ms))?;
    let c = &mut client;
    match &cli.command {
        Command::Cluster(ClusterCmd::Status) => print(&cluster::status(c)?, cli),
        Command::Topic(t) => match t {
            TopicCmd::List { internal } => print(&topic::list_topics(c, *internal)?, cli),
            TopicCmd::Describe { topic: name } => print(&topic::describe(c, name)?, cli),
            TopicCmd::Create {
                topic: name,
                partitions,
                replication_factor,
                configs,
            } => print(
                &topic::create(c, name, *partitions, *replication_factor, configs)?,
                cli,
            ),
            TopicCmd::Delete { topic: name } => print(&topic::delete(c, name)?, cli),
            TopicCmd::AlterConfig {
                topic: name,
                set,
                delete,
            } => print(&topic::alter_config(c, name, set, delete)?, cli),
        },
        Command::Group(g) => match g {
            GroupCmd::List => print(&group::list_groups(c)?, cli),
            GroupCmd::Describe { group: name } => print(&group::describe(c, name)?, cli),
            GroupCmd::ResetOffsets(r) => print(
                &group::reset_offsets(c, &r.group, &r.topic, r.to.spec(), r.execute)?,
                cli,
            ),
            GroupCmd::Delete { group: name } => print(&group::delete(c, name)?, cli),
        },
        Command::Produce(p) => {
            let mut stdin = std::io::stdin().lock();
            let report = data::produce(c, &p.topic, p.key.as_deref(), p.partition, &mut stdin)?;
            print(&report, cli)
        }
        Command::Consume(a) => {
            let opts = ConsumeOptions {
                from_beginning: a.from_beginning,
                max: a.max,
                partition: a.partition,
                idle_timeout: a.idle_timeout_ms.map(Duration::from_millis),
                format: cli.output,
            };
            let mut out = BufWriter::new(std::io::stdout().lock());
            data::consume(c, &a.topic, &opts, &mut out)?;
            Ok(())
        }
    }
}

fn main() {
    let cli = Cli::parse();
    if let Err(e) = run(&cli) {
        eprintln!("chronik-ctl: {e:#}");
        std::process::exit(1);
    }
}
