module nfschwinger

go 1.26

require (
	github.com/BurntSushi/toml v1.6.0
	github.com/sbromberger/gompi v0.2.0
	gonum.org/v1/gonum v0.17.0
	gonum.org/v1/hdf5 v0.0.0-20210714002203-8c5d23bc6946
	gonum.org/v1/netlib v0.0.0-20230729102104-8b8060e7531f
)
