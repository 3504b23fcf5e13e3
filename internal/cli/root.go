package cli

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"
	"gopkg.in/yaml.v3"
)

// DefaultURL is the hub the command line talks to when nothing says another.
const DefaultURL = "http://localhost:8080"

// NewRoot returns the `shopfloor` command with the commands that work over
// the REST API. Other packages add theirs with AddCommand.
func NewRoot() *cobra.Command {
	root := &cobra.Command{
		Use:   "shopfloor",
		Short: "Shopfloor: industrial IoT hub, edge and command line",
		Long: `Shopfloor connects machines over MQTT, stores their telemetry and manages
devices, sites and access for factories on private 4G/5G networks.

The commands below talk to a hub's REST API. Tell them where and who you are with
--url, --token and --org, the environment variables SHOPFLOOR_URL, SHOPFLOOR_TOKEN
and SHOPFLOOR_ORG, or the keys url, token and org in
$XDG_CONFIG_HOME/shopfloor/config.yaml (default ~/.config/shopfloor/config.yaml);
a flag wins over the environment, which wins over the file.`,
		SilenceErrors: false,
		// Flags are checked before the command runs; afterwards a failure is
		// about the hub or the data, and the usage text would only hide it.
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			cmd.SilenceUsage = true
			_, err := outputFormat(cmd)
			return err
		},
	}
	pf := root.PersistentFlags()
	pf.String("url", DefaultURL, "hub URL (env SHOPFLOOR_URL)")
	pf.String("token", "", "API token (env SHOPFLOOR_TOKEN)")
	pf.String("org", "", "customer organization to act on, for operator-organization tokens (env SHOPFLOOR_ORG)")
	pf.StringP("output", "o", "table", "output format: table or json")
	_ = root.RegisterFlagCompletionFunc("output", fixedCompletion("table", "json"))

	root.AddCommand(orgCommand(), tokenCommand(), siteCommand(), deviceCommand(), queryCommand())
	root.AddCommand(ruleCommand(), alertCommand(), exportCommand())
	root.AddCommand(twinCommand(), methodCommand(), c2dCommand())
	root.AddCommand(simCommand(), deviceGroupCommand(), sliceCommand(), coreCommand())
	root.AddCommand(templateCommand(), jobCommand())
	root.AddCommand(userCommand(), usageCommand(), auditCommand())
	return root
}

// settings are the connection settings after precedence is applied.
type settings struct {
	URL, Token, Org string
}

// fileSettings is the config file's shape.
type fileSettings struct {
	URL   string `yaml:"url"`
	Token string `yaml:"token"`
	Org   string `yaml:"org"`
}

// ConfigPath is the config file: $XDG_CONFIG_HOME/shopfloor/config.yaml, or
// $HOME/.config/shopfloor/config.yaml.
func ConfigPath() string {
	if x := os.Getenv("XDG_CONFIG_HOME"); x != "" {
		return filepath.Join(x, "shopfloor", "config.yaml")
	}
	home := os.Getenv("HOME")
	if home == "" {
		if h, err := os.UserHomeDir(); err == nil {
			home = h
		}
	}
	if home == "" {
		return ""
	}
	return filepath.Join(home, ".config", "shopfloor", "config.yaml")
}

func readConfigFile(path string) (fileSettings, error) {
	var fsv fileSettings
	if path == "" {
		return fsv, nil
	}
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return fsv, nil
	}
	if err != nil {
		return fsv, fmt.Errorf("read the config file: %w", err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&fsv); err != nil && !errors.Is(err, io.EOF) {
		return fsv, fmt.Errorf("config file %s: %v (the keys are url, token and org)", path, err)
	}
	return fsv, nil
}

// settingsFrom applies flag > environment > config file > default.
func settingsFrom(cmd *cobra.Command) (settings, error) {
	file, err := readConfigFile(ConfigPath())
	if err != nil {
		return settings{}, err
	}
	pick := func(flag, env, fromFile, def string) string {
		if f := cmd.Flag(flag); f != nil && f.Changed {
			return f.Value.String()
		}
		if v := os.Getenv(env); v != "" {
			return v
		}
		if fromFile != "" {
			return fromFile
		}
		return def
	}
	return settings{
		URL:   pick("url", "SHOPFLOOR_URL", file.URL, DefaultURL),
		Token: pick("token", "SHOPFLOOR_TOKEN", file.Token, ""),
		Org:   pick("org", "SHOPFLOOR_ORG", file.Org, ""),
	}, nil
}

func fixedCompletion(values ...string) func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
	return func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
		return values, cobra.ShellCompDirectiveNoFileComp
	}
}
