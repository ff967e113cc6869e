package main

import (
	"context"
	"fmt"
	"io"
	"strings"
)

var completionCommand = &command{
	name: "completion", args: "bash|zsh|fish|powershell", min: 1, max: 1,
	summary: "print a shell completion script",
	examples: []string{
		"source <(ocipull completion bash)",
		"ocipull completion zsh > \"${fpath[1]}/_ocipull\"",
		"ocipull completion fish > ~/.config/fish/completions/ocipull.fish",
		"ocipull completion powershell | Out-String | Invoke-Expression",
	},
	define: func(f *flags, e *env) func(context.Context) error {
		return func(context.Context) error {
			switch e.args[0] {
			case "bash":
				return completionScript(e.stdout, bashTemplate)
			case "zsh":
				return completionScript(e.stdout, zshTemplate)
			case "fish":
				return fishCompletion(e.stdout)
			case "powershell":
				return completionScript(e.stdout, powershellTemplate)
			}
			return usageErr("want bash, zsh, fish or powershell, got %q", safe(e.args[0]))
		}
	},
}

// completionScript fills a template with every command and its flags,
// taken from the commands' own flag sets.
func completionScript(w io.Writer, tmpl string) error {
	var names, cases []string
	for _, c := range commands {
		names = append(names, c.name)
		f, _ := c.flags(&env{})
		cases = append(cases, fmt.Sprintf("    %s) flags=%q ;;", c.name, strings.Join(f.names(), " ")))
	}
	s := strings.ReplaceAll(tmpl, "@COMMANDS@", strings.Join(names, " "))
	s = strings.ReplaceAll(s, "@CASES@", strings.Join(cases, "\n"))
	s = strings.ReplaceAll(s, "@PLATFORMS@", strings.Join(completionPlatforms, " "))
	var ps []string
	for _, c := range commands {
		f, _ := c.flags(&env{})
		ps = append(ps, fmt.Sprintf("  '%s' = @(%s)", c.name, quoteAll(f.names())))
	}
	s = strings.ReplaceAll(s, "@PSCASES@", strings.Join(ps, "\n"))
	_, err := io.WriteString(w, s)
	return err
}

// completionPlatforms are offered for --platform: the ones images
// commonly carry.
var completionPlatforms = []string{"linux/amd64", "linux/arm64", "linux/arm/v7", "linux/arm/v6", "linux/386",
	"linux/ppc64le", "linux/s390x", "linux/riscv64", "windows/amd64"}

// flagValues are the values offered after a flag that takes one of a
// fixed set.
var flagValues = map[string]string{
	"--platform": strings.Join(completionPlatforms, " "), "-p": strings.Join(completionPlatforms, " "),
	"--format": "oci docker-archive", "--log-format": "text json",
}

func quoteAll(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = "'" + s + "'"
	}
	return strings.Join(q, ", ")
}

// fishCompletion writes the fish script: subcommands, each command's
// flags, and the values of the flags that take one of a fixed set.
func fishCompletion(w io.Writer) error {
	var b strings.Builder
	b.WriteString("# fish completion for ocipull\ncomplete -c ocipull -f\n")
	var names []string
	for _, c := range commands {
		names = append(names, c.name)
		fmt.Fprintf(&b, "complete -c ocipull -n '__fish_use_subcommand' -a %s -d %q\n", c.name, c.summary)
	}
	for _, c := range commands {
		f, _ := c.flags(&env{})
		for _, long := range f.order {
			line := fmt.Sprintf("complete -c ocipull -n '__fish_seen_subcommand_from %s' -l %s", c.name, long)
			if s := f.short[long]; s != "" {
				line += " -s " + s
			}
			if vals, ok := flagValues["--"+long]; ok {
				line += fmt.Sprintf(" -x -a %q", vals)
			}
			b.WriteString(line + "\n")
		}
		if c.min > 0 || c.max != 0 {
			fmt.Fprintf(&b, "complete -c ocipull -n '__fish_seen_subcommand_from %s' -F\n", c.name)
		}
	}
	fmt.Fprintf(&b, "complete -c ocipull -n '__fish_seen_subcommand_from help' -a %q\n", strings.Join(names, " "))
	_, err := io.WriteString(w, b.String())
	return err
}

const bashTemplate = `# bash completion for ocipull
_ocipull() {
  local cur prev cmd flags
  cur="${COMP_WORDS[COMP_CWORD]}"
  prev="${COMP_WORDS[COMP_CWORD-1]}"
  case "$prev" in
    --platform|-p) COMPREPLY=($(compgen -W "@PLATFORMS@" -- "$cur")); return ;;
    --format) COMPREPLY=($(compgen -W "oci docker-archive" -- "$cur")); return ;;
    --log-format) COMPREPLY=($(compgen -W "text json" -- "$cur")); return ;;
  esac
  if [ "$COMP_CWORD" -eq 1 ]; then
    COMPREPLY=($(compgen -W "@COMMANDS@ help --help --version" -- "$cur"))
    return
  fi
  cmd="${COMP_WORDS[1]}"
  case "$cmd" in
@CASES@
    help) COMPREPLY=($(compgen -W "@COMMANDS@" -- "$cur")); return ;;
    *) flags="" ;;
  esac
  if [[ "$cur" == -* ]]; then
    COMPREPLY=($(compgen -W "$flags" -- "$cur"))
  else
    COMPREPLY=($(compgen -f -- "$cur"))
  fi
}
complete -o default -F _ocipull ocipull
`

const zshTemplate = `#compdef ocipull
# zsh completion for ocipull
_ocipull() {
  local -a commands flags
  commands=(@COMMANDS@)
  if (( CURRENT == 2 )); then
    compadd -- $commands help --help --version
    return
  fi
  case "${words[CURRENT-1]}" in
    --platform|-p) compadd -- @PLATFORMS@; return ;;
    --format) compadd -- oci docker-archive; return ;;
    --log-format) compadd -- text json; return ;;
  esac
  local flags=""
  case "${words[2]}" in
@CASES@
    help) compadd -- $commands; return ;;
  esac
  if [[ "${words[CURRENT]}" == -* ]]; then
    compadd -- ${=flags}
  else
    _files
  fi
}
compdef _ocipull ocipull
`

const powershellTemplate = `# PowerShell completion for ocipull
Register-ArgumentCompleter -Native -CommandName ocipull -ScriptBlock {
  param($wordToComplete, $commandAst, $cursorPosition)
  $commands = '@COMMANDS@'.Split(' ')
  $flags = @{
@PSCASES@
  }
  $values = @{
    '--platform' = '@PLATFORMS@'.Split(' '); '-p' = '@PLATFORMS@'.Split(' ')
    '--format' = @('oci', 'docker-archive'); '--log-format' = @('text', 'json')
  }
  $words = @($commandAst.CommandElements | ForEach-Object { $_.ToString() })
  if ($wordToComplete -ne '') { $words = $words[0..($words.Count - 2)] }
  $candidates = @()
  if ($words.Count -le 1) {
    $candidates = $commands + @('help', '--help', '--version')
  } elseif ($values.ContainsKey($words[-1])) {
    $candidates = $values[$words[-1]]
  } elseif ($words[1] -eq 'help') {
    $candidates = $commands
  } elseif ($flags.ContainsKey($words[1])) {
    $candidates = $flags[$words[1]]
  }
  $candidates | Where-Object { $_ -like "$wordToComplete*" } | ForEach-Object {
    [System.Management.Automation.CompletionResult]::new($_, $_, 'ParameterValue', $_)
  }
}
`
